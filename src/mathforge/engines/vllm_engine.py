"""The ``vllm`` engine: vLLM's offline ``LLM`` on one or more GPUs (optional extra ``[vllm]``).

vLLM is imported only when this engine is built, so the rest of mathforge never needs it.
Token-id prompts go in as vLLM's ``TokensPrompt(prompt_token_ids=ids)``; each output's
``token_ids`` are the sampled tokens (the end-of-sequence token and the tokens of a matched stop
string included), and ``logprobs=0`` returns the sampled token's log-probability at each step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

from mathforge.engines.base import (
    Completion,
    EngineCapabilities,
    FinishReason,
    Prompt,
    SamplingParams,
    adds_bos,
    align_token_ids,
    encode_prompt,
)
from mathforge.errors import MathforgeError


class VLLMEngine:
    """Generate with a ``vllm.LLM``; completions follow the shared protocol exactly (text cut
    before the stop string, end-of-sequence token left out of ``token_ids``, kept in
    ``sampled_ids``).

    Log-probabilities follow ``Completion.logprobs`` when the ``LLM`` runs with
    ``logprobs_mode="processed_logprobs"`` (after temperature and top-p), which :meth:`load` sets
    where the installed vLLM has the option (0.10.2 and later); an ``LLM`` built elsewhere with
    vLLM's default ``raw_logprobs`` returns the raw model distribution instead.
    """

    capabilities = EngineCapabilities(token_ids_in=True, logprobs=True)

    def __init__(self, llm: Any, *, progress: bool = False) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.progress = progress
        self._bos = self.tokenizer.bos_token if adds_bos(self.tokenizer) else None

    @classmethod
    def load(
        cls,
        model: str = "smollm2-135m",
        *,
        dtype: str = "auto",
        tensor_parallel_size: int = 1,
        gpu_memory_utilization: float = 0.9,
        max_model_len: int | None = None,
        progress: bool = False,
        **llm_options: Any,
    ) -> VLLMEngine:
        """Load a model by name, directory or hub id into vLLM (extra options go to ``vllm.LLM``)."""
        try:
            import vllm
        except ImportError as exc:
            raise MathforgeError("the vllm engine needs vLLM: pip install 'mathforge[vllm]'") from exc
        from mathforge.models import resolve_model

        if _has_engine_arg(vllm, "logprobs_mode"):
            llm_options.setdefault("logprobs_mode", "processed_logprobs")
        llm = vllm.LLM(
            model=str(resolve_model(model)),
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **llm_options,
        )
        return cls(llm, progress=progress)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt, by the same rule as the hf engine (BOS added once)."""
        return encode_prompt(self.tokenizer, prompt, self._bos)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt (a rendered string or its token ids), in prompt order."""
        import vllm

        per_prompt = [
            vllm.SamplingParams(
                n=params.n,
                temperature=params.temperature,
                top_p=params.top_p,
                max_tokens=params.max_new_tokens,
                stop=list(params.stop),
                seed=None if params.seed is None else params.seed + index,
                skip_special_tokens=True,
                logprobs=0 if params.logprobs else None,  # 0: the sampled token's only
            )
            for index in range(len(prompts))
        ]
        from vllm.inputs import TokensPrompt

        inputs = [
            p if isinstance(p, str) else TokensPrompt(prompt_token_ids=[int(t) for t in p]) for p in prompts
        ]
        outputs = self.llm.generate(inputs, per_prompt, use_tqdm=self.progress)
        return [[self._completion(choice) for choice in output.outputs] for output in outputs]

    def _completion(self, choice: Any) -> Completion:
        ids = list(choice.token_ids)
        logprobs = None
        if choice.logprobs is not None:  # one {token id: Logprob} per step, the sampled token in it
            logprobs = [float(step[token].logprob) for step, token in zip(choice.logprobs, ids, strict=True)]
        reason = choice.stop_reason
        finish: FinishReason
        if choice.finish_reason == "length":
            finish, stop = "length", None
        elif isinstance(reason, str):
            finish, stop = "stop", reason
        else:  # the end-of-sequence token (or a stop token id): vLLM keeps it in token_ids
            finish, stop = "eos", None
        text = choice.text
        kept = align_token_ids(self.tokenizer, ids, text)
        return Completion(text, kept, finish, stop, sampled_ids=ids, logprobs=logprobs)


def _has_engine_arg(vllm: Any, name: str) -> bool:
    """Whether the installed vLLM's ``EngineArgs`` (what ``LLM`` options become) has ``name``."""
    engine_args = getattr(vllm, "EngineArgs", None)
    return dataclasses.is_dataclass(engine_args) and any(
        f.name == name for f in dataclasses.fields(engine_args)
    )
