"""Problems for evaluation and training: benchmark registry, loaders, generated problems."""

from mathforge.data.generated import FAMILIES, GENERATED, generate_problems
from mathforge.data.loaders import (
    default_data_dir,
    load_benchmark,
    load_problems_file,
    parse_field_map,
    write_problems,
)
from mathforge.data.registry import BENCHMARKS, Benchmark, get_benchmark
from mathforge.data.sources import GeneratedSpec, bench_label, load_problems, split_bench_list
from mathforge.records import Problem

__all__ = [
    "BENCHMARKS",
    "FAMILIES",
    "GENERATED",
    "Benchmark",
    "GeneratedSpec",
    "Problem",
    "bench_label",
    "default_data_dir",
    "generate_problems",
    "get_benchmark",
    "load_benchmark",
    "load_problems",
    "load_problems_file",
    "parse_field_map",
    "split_bench_list",
    "write_problems",
]
