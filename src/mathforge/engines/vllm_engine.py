"""The ``vllm`` engine: vLLM's offline ``LLM`` on one or more GPUs (optional extra ``[vllm]``).

vLLM is imported only when this engine is built, so the rest of mathforge never needs it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mathforge.engines.base import Completion, FinishReason, SamplingParams, align_token_ids
from mathforge.errors import MathforgeError


class VLLMEngine:
    """Generate with a ``vllm.LLM``; completions follow the shared protocol exactly (text cut
    before the stop string, end-of-sequence token left out of ``token_ids``)."""

    def __init__(self, llm: Any, *, progress: bool = False) -> None:
        self.llm = llm
        self.tokenizer = llm.get_tokenizer()
        self.progress = progress

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

        llm = vllm.LLM(
            model=str(resolve_model(model)),
            dtype=dtype,
            tensor_parallel_size=tensor_parallel_size,
            gpu_memory_utilization=gpu_memory_utilization,
            max_model_len=max_model_len,
            **llm_options,
        )
        return cls(llm, progress=progress)

    def generate(self, prompts: Sequence[str], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt, in prompt order."""
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
            )
            for index in range(len(prompts))
        ]
        outputs = self.llm.generate(list(prompts), per_prompt, use_tqdm=self.progress)
        return [[self._completion(choice) for choice in output.outputs] for output in outputs]

    def _completion(self, choice: Any) -> Completion:
        ids = list(choice.token_ids)
        reason = choice.stop_reason
        finish: FinishReason
        if choice.finish_reason == "length":
            finish, stop = "length", None
        elif isinstance(reason, str):
            finish, stop = "stop", reason
        else:  # the end-of-sequence token (or a stop token id): vLLM keeps it in token_ids
            finish, stop = "eos", None
        text = choice.text
        return Completion(text, align_token_ids(self.tokenizer, ids, text), finish, stop)
