"""The hf engine on tiny random models: agreement with model.generate, batching, stops, sampling."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from fixtures_models import tiny_causal_lm
from mathforge.engines import SamplingParams, load_engine, truncate_at_stop
from mathforge.engines.base import find_stop
from mathforge.engines.hf import HFEngine
from mathforge.engines.hf.sampler import sample_tokens
from mathforge.errors import MathforgeError

PROMPTS = [
    "What is 2 + 2?",
    "A much longer prompt about trains leaving stations at different speeds and times, "
    "asking when they meet, with many more words than the others.",
    "Hi",
    "Compute the sum of the first ten positive integers, please.",
    "x",
]


@pytest.fixture(scope="module", params=["llama", "qwen2"])
def engine(request: pytest.FixtureRequest, embedded_tokenizer: Any) -> HFEngine:
    return HFEngine(tiny_causal_lm(embedded_tokenizer, arch=request.param), embedded_tokenizer)


@pytest.fixture(scope="module")
def sharp_engine(embedded_tokenizer: Any) -> HFEngine:
    """A tiny model whose next-token distributions peak like a trained model's (small nuclei)."""
    return HFEngine(tiny_causal_lm(embedded_tokenizer, arch="qwen2", sharpness=12), embedded_tokenizer)


def reference_greedy(engine: HFEngine, prompt: str, max_new_tokens: int) -> list[int]:
    """Unbatched, unpadded model.generate: what every row of a batch must reproduce."""
    ids = torch.tensor([engine.encode(prompt)])
    out = engine.model.generate(
        ids, attention_mask=torch.ones_like(ids), max_new_tokens=max_new_tokens, do_sample=False
    )
    tokens = out[0, ids.shape[1] :].tolist()
    for position, token in enumerate(tokens):
        if token in engine.eos_ids:
            return tokens[:position]
    return tokens


@contextlib.contextmanager
def forward_input_shapes(model: Any) -> Iterator[list[tuple[int, ...]]]:
    """The ``input_ids`` shape of every forward pass ``model`` runs inside the block."""
    shapes: list[tuple[int, ...]] = []
    hook = model.register_forward_pre_hook(
        lambda module, args, kwargs: shapes.append(tuple(kwargs["input_ids"].shape)), with_kwargs=True
    )
    try:
        yield shapes
    finally:
        hook.remove()


def test_greedy_batch_matches_unbatched_generate_in_prompt_order(engine: HFEngine) -> None:
    # Prompts of very different lengths are sorted and padded internally; results come back in
    # input order and equal each prompt generated alone.
    params = SamplingParams(max_new_tokens=24)
    outputs = engine.generate(PROMPTS, params)
    assert len(outputs) == len(PROMPTS)
    for prompt, group in zip(PROMPTS, outputs, strict=True):
        assert len(group) == 1
        completion = group[0]
        assert completion.token_ids == reference_greedy(engine, prompt, 24)
        assert completion.text == engine.tokenizer.decode(completion.token_ids, skip_special_tokens=True)
        assert completion.finish_reason in ("length", "eos")


def test_continuous_batching_with_a_small_batch_gives_the_same_results(engine: HFEngine) -> None:
    # max_batch_size 2 forces refills: rows leave, new prompts are prefilled and merged in.
    small = HFEngine(engine.model, engine.tokenizer, max_batch_size=2, prefill_tokens=16)
    params = SamplingParams(max_new_tokens=20)
    assert [g[0].token_ids for g in small.generate(PROMPTS, params)] == [
        g[0].token_ids for g in engine.generate(PROMPTS, params)
    ]


def test_shared_prompt_prefix_is_encoded_once(engine: HFEngine) -> None:
    from mathforge.prompts import render_prompt

    questions = ["What is 2 + 2?", "Name a prime number larger than ten.", "What is 2 + 2?", "Why?"]
    prompts = [render_prompt(q, engine.tokenizer, "cot") for q in questions] + ["Hi", "Hi there"]
    with forward_input_shapes(engine.model) as shapes:
        outputs = engine.generate(prompts, SamplingParams(max_new_tokens=12))
    for prompt, group in zip(prompts, outputs, strict=True):
        assert group[0].token_ids == reference_greedy(engine, prompt, 12)
    # The chat prompts' common system turn went through the model once, as a single row.
    prefix = shapes[0]
    assert prefix[0] == 1 and prefix[1] > 20
    encoded = sum(rows * width for rows, width in shapes if width > 1)
    assert encoded < sum(len(engine.encode(p)) for p in prompts)


def test_the_start_all_prompts_share_is_encoded_once_per_call(engine: HFEngine) -> None:
    # Several prefill groups (a small prefill budget) all start from the system turn, encoded
    # once for the call; a group's own common start beyond it is encoded once per group.
    from mathforge.engines.hf.batch import common_prefix_length
    from mathforge.prompts import render_prompt

    questions = [
        "What is 2 + 2?",
        "Name a prime number larger than ten.",
        "What is 2 + 2?",
        "A train leaves at noon at sixty miles an hour; another leaves an hour later at ninety. "
        "When do they meet?",
    ]
    prompts = [render_prompt(q, engine.tokenizer, "cot") for q in questions]
    common = common_prefix_length([engine.encode(p) for p in prompts])
    small = HFEngine(engine.model, engine.tokenizer, prefill_tokens=96)
    with forward_input_shapes(engine.model) as shapes:
        outputs = small.generate(prompts, SamplingParams(max_new_tokens=12))
    for prompt, group in zip(prompts, outputs, strict=True):
        assert group[0].token_ids == reference_greedy(engine, prompt, 12)
    assert shapes[0] == (1, common) and shapes.count((1, common)) == 1
    prefills = [shape for shape in shapes if shape[1] > 1]
    assert len(prefills) > 3  # the prefix, then more than one group
    assert sum(rows * width for rows, width in prefills) < sum(len(small.encode(p)) for p in prompts)


def test_rows_leave_the_batch_at_different_lengths(embedded_tokenizer: Any) -> None:
    # Per-row limits differ when prompts fill the context: short rows finish, long ones go on,
    # and each still matches its unbatched generation.
    model = tiny_causal_lm(embedded_tokenizer, max_position_embeddings=40)
    engine = HFEngine(model, embedded_tokenizer)
    prompts = ["word " * 30, "Hi", "word " * 20]
    outputs = engine.generate(prompts, SamplingParams(max_new_tokens=30))
    lengths = [len(group[0].token_ids) for group in outputs]
    for prompt, group, length in zip(prompts, outputs, lengths, strict=True):
        assert length <= 40 - len(engine.encode(prompt))
        assert group[0].token_ids == reference_greedy(engine, prompt, length)
    assert len(set(lengths)) > 1


def test_stop_strings_cut_exactly(engine: HFEngine) -> None:
    full = engine.generate(["Hi"], SamplingParams(max_new_tokens=40))[0][0].text
    assert len(full) > 20
    # A stop string taken from the middle of the output, starting at an arbitrary character
    # (often inside a token): the text ends right before it.
    for start in (5, 11, 17):
        stop = full[start : start + 4]
        if not stop.strip():
            continue
        first = full.find(stop)
        completion = engine.generate(["Hi"], SamplingParams(max_new_tokens=40, stop=[stop]))[0][0]
        assert completion.finish_reason == "stop"
        assert completion.stop == stop
        assert completion.text == full[:first]
        assert engine.tokenizer.decode(completion.token_ids, skip_special_tokens=True) == completion.text


def test_earliest_stop_wins_and_helpers(engine: HFEngine) -> None:
    full = engine.generate(["x"], SamplingParams(max_new_tokens=30))[0][0].text
    late, early = full[20:23], full[8:11]
    cut = engine.generate(["x"], SamplingParams(max_new_tokens=30, stop=[late, early]))[0][0]
    assert cut.text == full[: min(full.find(late), full.find(early))]
    assert truncate_at_stop("abc```output\nx", ["```output"]) == ("abc", "```output")
    assert truncate_at_stop("abc", ["zz"]) == ("abc", None)
    assert find_stop("aXbY", ["Y", "X"]) == (1, "X")


def _stopped_then_continued(engine: HFEngine, prompts: list[str]) -> tuple[list[list[int]], int]:
    """A TIR-like pair of calls: rows stop on a string (at different lengths: each prompt's
    output gives one stop string, from a different place), then each prompt comes back with
    every token its row sampled and a tool reply. Returns the continued prompts' ids and the
    cache columns the stopped rows retained."""
    texts = [group[0].text for group in engine.generate(prompts, SamplingParams(max_new_tokens=16))]
    stops = [
        text[2 + 3 * i : 5 + 3 * i] for i, text in enumerate(texts) if text[2 + 3 * i : 5 + 3 * i].strip()
    ]
    first = engine.generate(prompts, SamplingParams(max_new_tokens=16, stop=stops))
    reply = engine.encode("```output\n7\n```\n")
    contexts = [
        engine.encode(p) + group[0].sampled_ids + reply for p, group in zip(prompts, first, strict=True)
    ]
    stopped = [
        len(engine.encode(p)) + len(group[0].sampled_ids) - 1
        for p, group in zip(prompts, first, strict=True)
        if group[0].finish_reason == "stop"
    ]
    assert len(set(stopped)) > 2  # rows of several lengths retained: their caches are padded
    return contexts, sum(stopped)


def test_a_prompt_continuing_a_stopped_row_encodes_only_its_new_tokens(engine: HFEngine) -> None:
    # Rows that ended on a stop string keep their KV cache for the next call, where prompts that
    # continue them (mixed with prompts that do not) encode only the tokens after it, and the
    # results equal an engine that encodes every prompt from the start.
    contexts, retained = _stopped_then_continued(engine, PROMPTS)
    contexts.append(engine.encode("A prompt of its own"))
    encoded, reused = engine.prefilled_tokens, engine.reused_tokens
    params = SamplingParams(max_new_tokens=10, logprobs=True)
    again = engine.generate(contexts, params)
    assert engine.reused_tokens - reused == retained
    assert engine.prefilled_tokens - encoded == sum(len(c) for c in contexts) - retained
    fresh = HFEngine(engine.model, engine.tokenizer).generate(contexts, params)
    assert ids(again) == ids(fresh)
    for ours, theirs in zip(again, fresh, strict=True):
        assert ours[0].logprobs == pytest.approx(theirs[0].logprobs, abs=1e-5)


def test_retained_rows_last_one_call_and_only_while_the_weights_are_unchanged(
    embedded_tokenizer: Any,
) -> None:
    model = tiny_causal_lm(embedded_tokenizer)
    engine = HFEngine(model, embedded_tokenizer)
    params = SamplingParams(max_new_tokens=6)
    contexts, _ = _stopped_then_continued(engine, PROMPTS)
    engine.generate(["Another call in between"], params)
    reused = engine.reused_tokens
    engine.generate(contexts, params)
    assert engine.reused_tokens == reused  # the call in between replaced the retained rows

    contexts, _ = _stopped_then_continued(engine, PROMPTS)
    with torch.no_grad():  # an in-place update, as an optimiser step makes
        next(model.parameters()).mul_(1.01)
    engine.generate(contexts, params)
    assert engine.reused_tokens == reused


def test_keep_stopped_rows_off_encodes_every_prompt_in_full(embedded_tokenizer: Any) -> None:
    engine = HFEngine(tiny_causal_lm(embedded_tokenizer), embedded_tokenizer, keep_stopped_rows=False)
    contexts, _ = _stopped_then_continued(engine, PROMPTS)
    encoded = engine.prefilled_tokens
    engine.generate(contexts, SamplingParams(max_new_tokens=4))
    assert engine.reused_tokens == 0
    assert engine.prefilled_tokens - encoded == sum(len(c) for c in contexts)


@pytest.mark.parametrize("top_p", [1.0, 0.8])
def test_seeded_sampling_is_reproducible(sharp_engine: HFEngine, top_p: float) -> None:
    engine = sharp_engine
    params = SamplingParams(n=3, temperature=1.0, top_p=top_p, max_new_tokens=16, seed=1234)
    first = ids(engine.generate(PROMPTS, params))
    assert ids(engine.generate(PROMPTS, params)) == first
    assert ids(engine.generate(PROMPTS, params.replace(seed=99))) != first
    # Each row draws from its own seeded stream, so another batch size gives the same samples
    # up to the float rounding differences that padding causes (a draw right at a boundary).
    small = ids(HFEngine(engine.model, engine.tokenizer, max_batch_size=3).generate(PROMPTS, params))
    same = sum(
        a == b
        for group_a, group_b in zip(first, small, strict=True)
        for a, b in zip(group_a, group_b, strict=True)
    )
    assert same >= 0.8 * len(PROMPTS) * 3
    assert len({tuple(c) for group in first for c in group}) > len(PROMPTS)  # genuinely random


def ids(outputs: list) -> list:
    return [[c.token_ids for c in group] for group in outputs]


def test_n_samples_per_prompt(engine: HFEngine, sharp_engine: HFEngine) -> None:
    sampled = sharp_engine.generate(
        PROMPTS[:2], SamplingParams(n=4, temperature=1.0, max_new_tokens=12, seed=0)
    )
    assert [len(group) for group in sampled] == [4, 4]
    for group in sampled:
        assert len({tuple(c.token_ids) for c in group}) > 1  # distinct samples from one prompt
    greedy = engine.generate(PROMPTS[:2], SamplingParams(n=3, max_new_tokens=12))
    for prompt, group in zip(PROMPTS[:2], greedy, strict=True):
        assert all(c.token_ids == reference_greedy(engine, prompt, 12) for c in group)


def test_sampler_follows_temperature_and_top_p() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.2]])).repeat(4000, 1)
    generators = [torch.Generator().manual_seed(i) for i in range(4000)]
    draws = sample_tokens(logits, generators, SamplingParams(temperature=1.0))
    frequencies = torch.bincount(draws, minlength=3).float() / 4000
    assert torch.allclose(frequencies, torch.tensor([0.5, 0.3, 0.2]), atol=0.03)
    # top_p 0.6 keeps the smallest set reaching 0.6: tokens 0 and 1, renormalised to 5/8 and 3/8.
    draws = sample_tokens(logits, generators, SamplingParams(temperature=1.0, top_p=0.6))
    frequencies = torch.bincount(draws, minlength=3).float() / 4000
    assert frequencies[2] == 0
    assert torch.allclose(frequencies[:2], torch.tensor([0.625, 0.375]), atol=0.03)


def test_eos_ends_a_completion_without_appearing_in_it(engine: HFEngine) -> None:
    reference = reference_greedy(engine, "Hi", 12)
    stopper = reference[5]
    first = reference.index(stopper)
    patched = HFEngine(engine.model, engine.tokenizer)
    patched.eos_ids = {*engine.eos_ids, stopper}  # as if that token ended sequences
    completion = patched.generate(["Hi", "x"], SamplingParams(max_new_tokens=12))[0][0]
    assert completion.finish_reason == "eos"
    assert completion.token_ids == reference[:first]


def test_a_model_in_training_generates_in_eval_mode_and_stays_in_training(embedded_tokenizer: Any) -> None:
    model = tiny_causal_lm(embedded_tokenizer, attention_dropout=0.5).train()
    engine = HFEngine(model, embedded_tokenizer)
    first = engine.generate(["Hi"], SamplingParams(max_new_tokens=8))[0][0].token_ids
    assert model.training
    assert engine.generate(["Hi"], SamplingParams(max_new_tokens=8))[0][0].token_ids == first  # no dropout


def test_sampling_params_validation() -> None:
    with pytest.raises(MathforgeError, match="temperature"):
        SamplingParams(temperature=-1)
    with pytest.raises(MathforgeError, match="top_p"):
        SamplingParams(top_p=0)
    with pytest.raises(MathforgeError, match="n must be"):
        SamplingParams(n=0)
    assert SamplingParams(stop="```output").stop == ("```output",)


def test_load_engine_from_a_model_directory(tiny_model_dir: Any) -> None:
    engine = load_engine("hf", model=str(tiny_model_dir), dtype="float32")
    out = engine.generate(["Hello"], SamplingParams(max_new_tokens=5))
    assert len(out[0][0].token_ids) == 5
    with pytest.raises(MathforgeError, match="unknown engine"):
        load_engine("nope")


def test_loaded_engine_relays_its_linear_layers_with_the_same_outputs(tiny_model_dir: Any) -> None:
    # On a CPU the engine re-lays its own model's linear weights (MKL's packed layout where
    # torch has MKL, else stored transposed); the tokens must equal plain model.generate on
    # the model as saved.
    from transformers import AutoModelForCausalLM

    from mathforge.engines.hf.kernels import PackedLinear

    engine = load_engine("hf", model=str(tiny_model_dir), dtype="float32")
    layers = [m for m in engine.model.modules() if isinstance(m, torch.nn.Linear | PackedLinear)]
    assert len(layers) == 2 * 7 + 1  # two decoder layers of seven projections, and the output layer
    for layer in layers:
        assert isinstance(layer, PackedLinear) or layer.weight.t().is_contiguous()
    assert engine.model.get_input_embeddings().weight.is_contiguous()
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    outputs = engine.generate(PROMPTS, SamplingParams(max_new_tokens=16))
    for prompt, group in zip(PROMPTS, outputs, strict=True):
        ids = torch.tensor([engine.encode(prompt)])
        expected = plain.generate(
            ids, attention_mask=torch.ones_like(ids), max_new_tokens=16, do_sample=False
        )
        tokens = expected[0, ids.shape[1] :].tolist()
        cut = next((i for i, t in enumerate(tokens) if t in engine.eos_ids), len(tokens))
        assert group[0].token_ids == tokens[:cut]


def test_transposed_linear_weights_give_the_same_outputs() -> None:
    # float32 layers left unpacked (no MKL) keep their weights stored transposed; bf16 ones do not.
    from mathforge.engines.hf.kernels import store_linear_weights_transposed

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8))
    hidden = torch.randn(5, 16)
    expected = model(hidden)
    store_linear_weights_transposed(model)
    assert model[0].weight.t().is_contiguous() and model[2].weight.t().is_contiguous()
    torch.testing.assert_close(model(hidden), expected)
    half = torch.nn.Linear(16, 8).to(torch.bfloat16)
    store_linear_weights_transposed(half)
    assert half.weight.is_contiguous()


def test_bfloat16_engine_runs(tiny_model_dir: Any) -> None:
    engine = load_engine("hf", model=str(tiny_model_dir), dtype="bfloat16")
    assert engine.model.dtype == torch.bfloat16
    out = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6))
    assert all(len(group[0].token_ids) == 6 for group in out)


def _bf16_layers_compared(engine: HFEngine, tiny_model_dir: Any) -> list[torch.nn.Module]:
    """The engine's linear layers, each checked against the same layer of the model as saved."""
    from transformers import AutoModelForCausalLM

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16).eval()
    layers = dict(engine.model.named_modules())
    originals = {name: m for name, m in plain.named_modules() if isinstance(m, torch.nn.Linear)}
    for name, original in originals.items():
        for rows in (1, 3, 64):
            hidden = torch.randn(rows, 2, original.in_features).to(torch.bfloat16)
            with torch.inference_mode():
                torch.testing.assert_close(layers[name](hidden), original(hidden), rtol=2e-2, atol=2e-2)
    return [layers[name] for name in originals]


def test_bfloat16_engine_packs_its_linear_layers_where_onednn_can(tiny_model_dir: Any) -> None:
    # Where oneDNN runs bf16 (x86 builds; natively on AVX512_BF16/AMX, emulated on AVX-512), every
    # bf16 linear layer is prepacked; where it cannot, the layers stay plain and row-major.
    from mathforge.engines.hf.kernels import PackedBF16Linear, _can_pack

    engine = load_engine("hf", model=str(tiny_model_dir), dtype="bfloat16")
    layers = _bf16_layers_compared(engine, tiny_model_dir)
    packed = [layer for layer in layers if isinstance(layer, PackedBF16Linear)]
    if packed:
        assert _can_pack(torch.bfloat16) and len(packed) == len(layers)
    else:
        assert all(type(layer) is torch.nn.Linear and layer.weight.is_contiguous() for layer in layers)


def test_bfloat16_engine_keeps_plain_layers_where_packing_fails(
    tiny_model_dir: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The branch a CPU without oneDNN bf16 kernels takes, forced: the pack raises.
    from mathforge.engines.hf import kernels

    def fail(linear: torch.nn.Linear, *, shared: bool) -> torch.nn.Module:
        raise RuntimeError("could not create a primitive")

    monkeypatch.setattr(kernels, "_packed", fail)
    monkeypatch.setattr(kernels, "_can_pack", lambda dtype: True)
    engine = load_engine("hf", model=str(tiny_model_dir), dtype="bfloat16")
    layers = _bf16_layers_compared(engine, tiny_model_dir)
    assert all(type(layer) is torch.nn.Linear and layer.weight.is_contiguous() for layer in layers)
    out = engine.generate(PROMPTS, SamplingParams(max_new_tokens=6))
    assert all(len(group[0].token_ids) == 6 for group in out)


@pytest.mark.parametrize("loaded", [True, False], ids=["loaded", "callers-model"])
def test_the_output_layer_gets_a_contiguous_input_during_generation(
    loaded: bool, tiny_model_dir: Any, embedded_tokenizer: Any
) -> None:
    # A prefill's last position is a strided slice of its hidden states; handed to the output
    # layer as it is, matmul would copy the whole weight once per row.
    engine = (
        load_engine("hf", model=str(tiny_model_dir), dtype="float32")
        if loaded
        else HFEngine(tiny_causal_lm(embedded_tokenizer), embedded_tokenizer)
    )
    head = engine.model.get_output_embeddings()
    final_norm = engine.model.model.norm  # its output is what the model slices for the head
    widths: list[tuple[int, int]] = []
    contiguous: list[bool] = []
    probes = [
        final_norm.register_forward_hook(lambda m, args, out: widths.append(tuple(out.shape[:2]))),
        head.register_forward_hook(lambda m, args, out: contiguous.append(args[0].is_contiguous())),
    ]
    try:
        # Prompts of one length share a prefill group: several rows, several tokens each.
        engine.generate(
            ["What is 2 + 2?", "What is 3 + 5?", "What is 7 + 1?"], SamplingParams(max_new_tokens=4)
        )
    finally:
        for probe in probes:
            probe.remove()
    assert any(rows > 1 and width > 1 for rows, width in widths)  # a prefill of several prompts
    assert contiguous and all(contiguous)
    assert not head._forward_pre_hooks  # nothing left on the model after the call


def test_loaded_engine_packs_its_linear_layers_with_the_same_outputs(tiny_model_dir: Any) -> None:
    # Where torch has MKL (x86), every float32 linear layer runs MKL's packed GEMM at every batch
    # size; only the tied output layer keeps a real weight (the input embedding's), the others
    # a zero-strided placeholder so the weights are not held twice.
    from transformers import AutoModelForCausalLM

    from mathforge.engines.hf.kernels import PackedLinear

    if not torch.backends.mkl.is_available():
        pytest.skip("this torch build has no MKL")
    engine = load_engine("hf", model=str(tiny_model_dir), dtype="float32")
    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32).eval()
    packed = dict(engine.model.named_modules())
    originals = {name: m for name, m in plain.named_modules() if isinstance(m, torch.nn.Linear)}
    assert originals and all(isinstance(packed[name], PackedLinear) for name in originals)
    head = engine.model.get_output_embeddings()
    assert head.weight is engine.model.get_input_embeddings().weight
    for name, original in originals.items():
        layer = packed[name]
        if layer is not head:
            assert layer.weight.shape == original.weight.shape and layer.weight.stride() == (0, 0)
        for rows in (1, 3, 16, 64, 100):
            hidden = torch.randn(rows, 2, original.in_features)
            with torch.inference_mode():
                torch.testing.assert_close(layer(hidden), original(hidden), rtol=1e-5, atol=1e-5)
