"""The openai engine against a local HTTP server started here; the vllm engine where installed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mathforge.engines import SamplingParams, engine_capabilities, load_engine
from mathforge.engines.openai_compat import OpenAIEngine
from mathforge.errors import MathforgeError


class FakeServer:
    """A tiny OpenAI-compatible /v1/completions server with scripted failures.

    Like vLLM's server it takes a prompt as text or token ids, and names its tokens by id
    (``token_id:N``) when a request with ``logprobs`` says ``return_tokens_as_token_ids``, unless
    ``names_ids`` is off (a server without that extension, which ignores the field).
    """

    def __init__(self) -> None:
        self.names_ids = True
        self.requests: list[dict[str, Any]] = []
        self.headers: list[str | None] = []
        self.failures: list[int] = []  # status codes to answer before succeeding
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.release.set()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.requests.append(body)
                    server.headers.append(self.headers.get("Authorization"))
                    failure = server.failures.pop(0) if server.failures else None
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                server.release.wait(5)
                # Out of flight before the reply goes out: once the client has it, it may send the
                # next request, which must not be counted beside this one.
                with server.lock:
                    server.in_flight -= 1
                if failure is not None:
                    self._send(failure, {"error": {"message": f"scripted failure {failure}"}})
                elif self.path != "/v1/completions" or body.get("max_tokens", 0) < 1:
                    self._send(400, {"error": {"message": "max_tokens must be at least 1"}})
                else:
                    self._send(200, server.answer(body))

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                if status == 429:
                    self.send_header("Retry-After", "0")
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        choices = []
        for index in range(body["n"]):
            if isinstance(prompt, list):  # token ids: answer with their sum, so the test can tell
                text, reason, stop_reason = f"sum {sum(prompt)} #{index}", "stop", None
            elif "code" in prompt:  # a server that leaves the stop string in the text
                text, reason, stop_reason = "x = 1\n```\n```output\nleaked", "stop", "```output"
            elif "long" in prompt:
                text, reason, stop_reason = "word " * body["max_tokens"], "length", None
            else:
                text, reason, stop_reason = f"echo {prompt} #{index}", "stop", None
            choice = {"index": index, "text": text, "finish_reason": reason, "stop_reason": stop_reason}
            if body.get("logprobs") is not None:  # two tokens, as vLLM shapes completion logprobs
                by_id = self.names_ids and body.get("return_tokens_as_token_ids")
                tokens = ["token_id:17", f"token_id:{4 + index}"] if by_id else ["ec", "ho"]
                choice["logprobs"] = {
                    "tokens": tokens,
                    "token_logprobs": [-0.25, -0.5],
                    "top_logprobs": [{tokens[0]: -0.25}, {tokens[1]: -0.5}],
                    "text_offset": [0, 2],
                }
            choices.append(choice)
        return {"object": "text_completion", "choices": list(reversed(choices))}


@pytest.fixture
def server() -> Iterator[FakeServer]:
    fake = FakeServer()
    thread = threading.Thread(target=fake.httpd.serve_forever, daemon=True)
    thread.start()
    yield fake
    fake.httpd.shutdown()
    fake.httpd.server_close()


def test_completions_in_order_with_finish_reasons(
    server: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MY_KEY", "secret")
    engine = load_engine("openai", model="served", base_url=server.url, api_key_env="MY_KEY")
    params = SamplingParams(n=2, temperature=0.7, max_new_tokens=3, stop=["```output"], seed=5)
    out = engine.generate(["a", "code", "long"], params)
    assert [c.text for c in out[0]] == ["echo a #0", "echo a #1"]
    assert out[0][0].finish_reason == "eos"
    assert out[1][0].text == "x = 1\n```\n" and out[1][0].finish_reason == "stop"
    assert out[1][0].stop == "```output"
    assert out[2][0].finish_reason == "length"
    assert all(header == "Bearer secret" for header in server.headers)
    sent = {request["prompt"]: request for request in server.requests}
    assert sent["a"]["model"] == "served" and sent["a"]["n"] == 2 and sent["a"]["stop"] == ["```output"]
    assert sorted(request["seed"] for request in server.requests) == [5, 6, 7]


def test_retries_429_and_5xx_then_succeeds(server: FakeServer) -> None:
    server.failures = [429, 503, 500]
    engine = OpenAIEngine("m", base_url=server.url, backoff_s=0.01, max_concurrency=1)
    out = engine.generate(["a"], SamplingParams())
    assert out[0][0].text == "echo a #0"
    assert len(server.requests) == 4


def test_gives_up_after_max_retries(server: FakeServer) -> None:
    server.failures = [502] * 10
    engine = OpenAIEngine("m", base_url=server.url, backoff_s=0.001, max_retries=2)
    with pytest.raises(MathforgeError, match="HTTP 502 after 2 retries: scripted failure 502"):
        engine.generate(["a"], SamplingParams())


def test_client_errors_are_not_retried(server: FakeServer) -> None:
    server.failures = [401]
    engine = OpenAIEngine("m", base_url=server.url, backoff_s=0.001)
    with pytest.raises(MathforgeError, match="HTTP 401: scripted failure 401"):
        engine.generate(["a"], SamplingParams())
    assert len(server.requests) == 1


def test_concurrency_is_bounded(server: FakeServer) -> None:
    server.release.clear()
    engine = OpenAIEngine("m", base_url=server.url, max_concurrency=3)
    result: list[Any] = []
    worker = threading.Thread(
        target=lambda: result.append(engine.generate([str(i) for i in range(12)], SamplingParams()))
    )
    worker.start()
    threading.Timer(0.5, server.release.set).start()
    worker.join(10)
    assert [group[0].text for group in result[0]] == [f"echo {i} #0" for i in range(12)]
    assert server.max_in_flight == 3


def test_unreachable_server_is_a_clear_error() -> None:
    engine = OpenAIEngine("m", base_url="http://127.0.0.1:9/v1", max_retries=1, backoff_s=0.001)
    with pytest.raises(MathforgeError, match="cannot reach the server"):
        engine.generate(["a"], SamplingParams())


def test_token_ids_with_a_local_tokenizer(server: FakeServer, tiny_model_dir: Any) -> None:
    engine = OpenAIEngine("m", base_url=server.url, tokenizer=str(tiny_model_dir))
    completion = engine.generate(["a"], SamplingParams())[0][0]
    assert engine.tokenizer.decode(completion.token_ids) == completion.text


def test_logprobs_where_the_server_sends_them(server: FakeServer) -> None:
    engine = OpenAIEngine("m", base_url=server.url)
    assert not engine_capabilities(engine).token_ids_in  # token strings cannot be mapped to ids
    plain = engine.generate(["a"], SamplingParams())[0][0]
    assert plain.logprobs is None and plain.sampled_ids is None
    assert "logprobs" not in server.requests[0]
    named = engine.generate(["a"], SamplingParams(logprobs=True))[0][0]
    assert server.requests[1]["logprobs"] == 0 and "return_tokens_as_token_ids" not in server.requests[1]
    assert named.logprobs == [-0.25, -0.5] and named.sampled_ids is None


def test_token_id_prompts_and_sampled_ids_from_a_server_that_names_tokens_by_id(
    server: FakeServer, tiny_model_dir: Any
) -> None:
    engine = OpenAIEngine("m", base_url=server.url, tokenizer=str(tiny_model_dir), token_ids=True)
    assert engine_capabilities(engine).token_ids_in
    ids = engine.encode("Hello there")
    assert engine.tokenizer.decode(ids, skip_special_tokens=True) == "Hello there"
    by_ids, by_text = engine.generate([ids, "a"], SamplingParams(n=2, seed=3))
    sent = next(request for request in server.requests if isinstance(request["prompt"], list))
    assert sent["prompt"] == ids and sent["return_tokens_as_token_ids"] is True and sent["logprobs"] == 0
    assert [c.text for c in by_ids] == [f"sum {sum(ids)} #0", f"sum {sum(ids)} #1"]
    assert [c.sampled_ids for c in by_ids] == [[17, 4], [17, 5]] and by_text[1].sampled_ids == [17, 5]
    assert all(c.logprobs is None for c in by_ids)  # asked for the ids only, not the values
    with_logprobs = engine.generate([ids], SamplingParams(logprobs=True))[0][0]
    assert with_logprobs.sampled_ids == [17, 4] and with_logprobs.logprobs == [-0.25, -0.5]


def test_a_plain_engine_sends_token_id_prompts_as_they_are(server: FakeServer) -> None:
    engine = OpenAIEngine("m", base_url=server.url)
    out = engine.generate([[5, 6, 7]], SamplingParams())[0][0]
    assert server.requests[0]["prompt"] == [5, 6, 7] and out.text == "sum 18 #0"


def test_token_ids_refuse_a_server_that_does_not_name_tokens_by_id(
    server: FakeServer, tiny_model_dir: Any
) -> None:
    server.names_ids = False
    engine = OpenAIEngine("m", base_url=server.url, tokenizer=str(tiny_model_dir), token_ids=True)
    with pytest.raises(MathforgeError, match="did not name its sampled tokens by id"):
        engine.generate([[5, 6]], SamplingParams())
    with pytest.raises(MathforgeError, match="token_ids needs the served model's tokenizer"):
        OpenAIEngine("m", base_url=server.url, token_ids=True)


class EngineServer:
    """An OpenAI-compatible /v1/completions server in front of a local engine, answering as vLLM's
    server does: text or token-id prompts, and with ``logprobs`` each sampled token (as
    ``token_id:N`` when the request says ``return_tokens_as_token_ids``) and its log-probability."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.prompts: list[Any] = []
        self.lock = threading.Lock()  # one generate at a time, as the local engine expects
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.prompts.append(body["prompt"])
                    data = json.dumps(server.answer(body)).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def answer(self, body: dict[str, Any]) -> dict[str, Any]:
        params = SamplingParams(
            n=body["n"],
            temperature=body["temperature"],
            top_p=body["top_p"],
            max_new_tokens=body["max_tokens"],
            stop=body.get("stop", ()),
            seed=body.get("seed"),
            logprobs=True,
        )
        [completions] = self.engine.generate([body["prompt"]], params)
        choices = []
        for index, completion in enumerate(completions):
            finish = "length" if completion.finish_reason == "length" else "stop"
            choice = {"index": index, "text": completion.text, "finish_reason": finish}
            choice["stop_reason"] = completion.stop
            if body.get("logprobs") is not None:
                by_id = body.get("return_tokens_as_token_ids")
                tokens = [
                    f"token_id:{token}" if by_id else self.engine.tokenizer.decode([token])
                    for token in completion.sampled_ids
                ]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": completion.logprobs}
            choices.append(choice)
        return {"object": "text_completion", "choices": choices}


def test_token_exact_tir_through_a_server_matches_the_local_engine(
    embedded_tokenizer: Any, tiny_model_dir: Any
) -> None:
    from fixtures_models import tiny_causal_lm
    from mathforge.engines.hf import HFEngine
    from mathforge.prompts import render_prompt
    from mathforge.sandbox import Sandbox
    from mathforge.solve import solve_prompts
    from test_solve import _memorise

    prompt = render_prompt("What is 6 times 7?", embedded_tokenizer, "tir")
    response = "```python\nprint(6 * 7)\n```\n```output\n42\n```\nThe answer is $\\boxed{42}$."
    model = tiny_causal_lm(embedded_tokenizer, seed=1)
    _memorise(model, embedded_tokenizer, prompt, response + embedded_tokenizer.eos_token)
    local = HFEngine(model, embedded_tokenizer)
    served = EngineServer(local)
    threading.Thread(target=served.httpd.serve_forever, daemon=True).start()
    remote = OpenAIEngine("tiny", base_url=served.url, tokenizer=str(tiny_model_dir), token_ids=True)
    params = SamplingParams(max_new_tokens=80, logprobs=True)
    try:
        with Sandbox(timeout=5.0) as box:
            [[direct]] = solve_prompts([prompt], local, "tir", params=params, sandbox=box)
            [[through]] = solve_prompts([prompt], remote, "tir", params=params, sandbox=box)
    finally:
        served.httpd.shutdown()
        served.httpd.server_close()
    assert "\\boxed{42}" in through.response and through.response == direct.response
    assert through.prompt_ids == direct.prompt_ids and through.token_ids == direct.token_ids
    assert through.logprobs == pytest.approx(direct.logprobs)  # None for the executor's tokens
    # Each round conditioned on token ids: the prompt's, then the trajectory's own so far.
    assert len(served.prompts) == 2
    exact = through.prompt_ids + through.token_ids
    assert all(sent == exact[: len(sent)] for sent in served.prompts)


def test_vllm_engine_matches_the_protocol(tiny_model_dir: Any) -> None:
    pytest.importorskip("vllm", reason="vLLM is not installed (optional extra [vllm])")
    engine = load_engine("vllm", model=str(tiny_model_dir), gpu_memory_utilization=0.3)
    full = engine.generate(["Hello"], SamplingParams(max_new_tokens=30))[0][0]
    stop = full.text[10:14]
    cut = engine.generate(["Hello"], SamplingParams(max_new_tokens=30, stop=[stop]))[0][0]
    assert cut.finish_reason == "stop" and cut.text == full.text[: full.text.find(stop)]
    assert engine.tokenizer.decode(cut.token_ids, skip_special_tokens=True) == cut.text
    sampled = engine.generate(["a", "b"], SamplingParams(n=3, temperature=1.0, max_new_tokens=8, seed=1))
    assert [len(group) for group in sampled] == [3, 3]
    # Token-id prompts, sampled ids and one log-probability per sampled token.
    by_ids = engine.generate([engine.encode("Hello")], SamplingParams(max_new_tokens=30, logprobs=True))[0][0]
    assert by_ids.text == full.text and by_ids.sampled_ids is not None
    assert by_ids.sampled_ids[: len(full.token_ids)] == full.token_ids
    assert by_ids.logprobs is not None and len(by_ids.logprobs) == len(by_ids.sampled_ids)
    assert all(value <= 0 for value in by_ids.logprobs)
