"""The ``openai`` engine: any OpenAI-compatible ``/completions`` endpoint (vLLM, SGLang, llama.cpp).

Prompts are sent already rendered (the chat template is applied locally, as for the other
engines), or as token ids (``prompt`` as a list of ints, which vLLM's and llama.cpp's servers
take), one request per prompt asking for ``n`` choices, with at most ``max_concurrency``
requests in flight. 429 and 5xx answers and connection errors are retried with exponential
backoff (honouring ``Retry-After``); any other 4xx is a user error reported in one line.

With ``SamplingParams.logprobs`` the request asks for ``logprobs: 0`` (the sampled token's only)
and each completion carries the server's ``token_logprobs``, or None when it sends none. What
they mean is the server's choice (vLLM: its ``--logprobs-mode``; ``processed_logprobs`` matches
``Completion.logprobs``). ``sampled_ids`` are filled only when the server names its tokens by id
(``token_id:N``, which vLLM writes when a request says ``return_tokens_as_token_ids``): a
server's token strings cannot be mapped back to ids exactly.

So the engine declares ``token_ids_in`` (token-exact TIR, GRPO rollouts) only when built with
``token_ids=True`` for a server that names tokens by id: every request then asks for the
sampled tokens by id, and a completion without them is an error rather than a silent
re-encoding. The engine then also needs the model's ``tokenizer`` (for :meth:`OpenAIEngine.encode`).
"""

from __future__ import annotations

import contextlib
import os
import random
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from mathforge.engines.base import (
    Completion,
    EngineCapabilities,
    FinishReason,
    Prompt,
    SamplingParams,
    adds_bos,
    encode_prompt,
    truncate_at_stop,
)
from mathforge.errors import MathforgeError


class OpenAIEngine:
    """Generate through an OpenAI-compatible HTTP server.

    ``model`` is the name the server serves. ``tokenizer`` (a model name or directory) gives the
    chat template and token ids locally; without it prompts render as plain text and
    completions carry no token ids. The API key is read from the environment variable
    ``api_key_env`` (none is sent when it is unset, as local servers expect). ``token_ids``: the
    server names sampled tokens by id (vLLM's server), so the engine takes and returns token ids
    exactly (``capabilities.token_ids_in``); it needs ``tokenizer``.
    """

    capabilities: EngineCapabilities

    def __init__(
        self,
        model: str,
        *,
        base_url: str = "http://127.0.0.1:8000/v1",
        api_key_env: str = "OPENAI_API_KEY",
        tokenizer: str | None = None,
        max_concurrency: int = 16,
        max_retries: int = 6,
        backoff_s: float = 1.0,
        timeout_s: float = 600.0,
        token_ids: bool = False,
    ) -> None:
        if token_ids and tokenizer is None:
            raise MathforgeError("openai engine: token_ids needs the served model's tokenizer=")
        self.model = model
        self.base_url = base_url.rstrip("/")
        self.max_concurrency = max_concurrency
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.tokenizer: Any = None
        if tokenizer is not None:
            from mathforge.models import load_tokenizer

            self.tokenizer = load_tokenizer(tokenizer)
        self.token_ids = token_ids
        self.capabilities = EngineCapabilities(token_ids_in=token_ids, logprobs=True)
        self._bos = None
        if self.tokenizer is not None and adds_bos(self.tokenizer):
            self._bos = self.tokenizer.bos_token
        headers = {}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(headers=headers, timeout=timeout_s)

    def encode(self, prompt: str) -> list[int]:
        """Token ids of a rendered prompt by the local tokenizer, by the same rule as the hf and vllm
        engines (BOS added once where the tokenizer adds one, as servers do for text prompts)."""
        if self.tokenizer is None:
            raise MathforgeError("openai engine: encoding a prompt needs a local tokenizer (tokenizer=...)")
        return encode_prompt(self.tokenizer, prompt, self._bos)

    def generate(self, prompts: Sequence[Prompt], params: SamplingParams) -> list[list[Completion]]:
        """``params.n`` completions per prompt (a rendered string or its token ids), in prompt
        order (requests run concurrently)."""
        with ThreadPoolExecutor(max_workers=self.max_concurrency) as pool:
            futures = [pool.submit(self._one, index, prompt, params) for index, prompt in enumerate(prompts)]
            return [future.result() for future in futures]

    def close(self) -> None:
        self._client.close()

    def _one(self, index: int, prompt: Prompt, params: SamplingParams) -> list[Completion]:
        body: dict[str, Any] = {
            "model": self.model,
            "prompt": prompt if isinstance(prompt, str) else [int(token) for token in prompt],
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_new_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed + index  # reproducible, yet different per prompt
        if params.logprobs or self.token_ids:
            body["logprobs"] = 0  # the sampled token's only; its entry names the token
        if self.token_ids:
            body["return_tokens_as_token_ids"] = True  # a vLLM extension: tokens as "token_id:N"
        data = self._post("/completions", body)
        choices = sorted(data.get("choices") or [], key=lambda choice: choice.get("index", 0))
        if len(choices) != params.n:
            raise MathforgeError(
                f"{self.base_url}: asked for {params.n} choices, the server returned {len(choices)}"
            )
        return [self._completion(choice, params) for choice in choices]

    def _completion(self, choice: dict[str, Any], params: SamplingParams) -> Completion:
        stops = params.stop
        # Servers cut stop strings already; cutting again guards against ones that include them.
        text, stop = truncate_at_stop(choice.get("text") or "", stops)
        reason = choice.get("finish_reason")
        finish: FinishReason
        if stop is not None:
            finish = "stop"
        elif reason == "length":
            finish = "length"
        else:
            # OpenAI says "stop" for both a stop string and the end of sequence; vLLM adds
            # ``stop_reason`` (the matched string, or None/a token id for the end of sequence).
            matched = choice.get("stop_reason")
            finish, stop = (
                ("stop", matched) if isinstance(matched, str) and matched in stops else ("eos", None)
            )
        ids = (
            self.tokenizer(text, add_special_tokens=False)["input_ids"] if self.tokenizer is not None else []
        )
        sampled_ids, logprobs = _sampled_tokens(choice.get("logprobs"))
        if self.token_ids and sampled_ids is None:
            raise MathforgeError(
                f"{self.base_url}: the server did not name its sampled tokens by id "
                "(token_ids needs a server that honours return_tokens_as_token_ids, such as vLLM's)"
            )
        return Completion(
            text, ids, finish, stop, sampled_ids=sampled_ids, logprobs=logprobs if params.logprobs else None
        )

    def _post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        url = self.base_url + path
        for attempt in range(self.max_retries + 1):
            last = attempt == self.max_retries
            try:
                response = self._client.post(url, json=body)
            except httpx.TransportError as exc:
                if last:
                    raise MathforgeError(f"{url}: cannot reach the server ({exc})") from exc
                self._wait(attempt, None)
                continue
            if response.status_code == 429 or response.status_code >= 500:
                if last:
                    status, retries = response.status_code, self.max_retries
                    raise MathforgeError(
                        f"{url}: HTTP {status} after {retries} retries: {_message(response)}"
                    )
                self._wait(attempt, response.headers.get("retry-after"))
                continue
            if response.status_code >= 400:
                raise MathforgeError(f"{url}: HTTP {response.status_code}: {_message(response)}")
            try:
                return response.json()
            except ValueError as exc:
                raise MathforgeError(f"{url}: the server's answer is not JSON") from exc
        raise AssertionError("unreachable")

    def _wait(self, attempt: int, retry_after: str | None) -> None:
        delay = self.backoff_s * 2**attempt * (1 + random.random() / 4)
        if retry_after is not None:
            with contextlib.suppress(ValueError):  # an HTTP date instead of seconds: keep ours
                delay = max(delay, float(retry_after))
        time.sleep(delay)


def _sampled_tokens(data: Any) -> tuple[list[int] | None, list[float] | None]:
    """Sampled token ids (when the server writes tokens as ``token_id:N``) and log-probabilities
    from a choice's ``logprobs`` object; None for what the server did not send."""
    if not isinstance(data, dict):
        return None, None
    values = data.get("token_logprobs")
    logprobs = [float(v) for v in values] if values and all(v is not None for v in values) else None
    tokens = data.get("tokens") or []
    ids = None
    if tokens and all(isinstance(t, str) and t.startswith("token_id:") for t in tokens):
        with contextlib.suppress(ValueError):
            ids = [int(t.removeprefix("token_id:")) for t in tokens]
    return ids, logprobs


def _message(response: httpx.Response) -> str:
    """The server's error message in one short line."""
    try:
        data = response.json()
        error = data.get("error", data) if isinstance(data, dict) else data
        text = error.get("message", str(error)) if isinstance(error, dict) else str(error)
    except ValueError:
        text = response.text
    return " ".join(text.split())[:300] or response.reason_phrase
