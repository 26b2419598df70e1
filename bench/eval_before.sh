#!/bin/sh
# The embedded model's "before" numbers (bench/RESULTS.md, "Evaluation"): the evaluations the
# self-improvement loop must beat. Each run resumes when rerun; a larger LIMIT extends a
# finished run without generating its problems again.
# Usage: sh bench/eval_before.sh NAME [LIMIT]
#   NAME: gsm8k-cot | math500-cot | gsm8k-maj8 | gsm8k-tir   (LIMIT: first problems only)
set -eu
MF=${MF:-.venv/bin/mathforge}
DATA=${MATHFORGE_DATA_DIR:-../shared/data}
OUT=${OUT:-runs/before}
name=$1
limit=${2:+--limit $2}
common="--data-dir $DATA --max-new-tokens 512 --out $OUT/$name"
case $name in
  gsm8k-cot) $MF eval --bench gsm8k --mode cot --chunk-size 128 $limit $common ;;
  math500-cot) $MF eval --bench math500 --mode cot --chunk-size 256 $limit $common ;;
  gsm8k-maj8) $MF eval --bench gsm8k --n 8 --limit ${2:-200} --chunk-size 16 $common ;;
  gsm8k-tir) $MF eval --bench gsm8k --mode tir --chunk-size 128 $limit $common ;;
  *) echo "unknown run '$name'" >&2; exit 2 ;;
esac
