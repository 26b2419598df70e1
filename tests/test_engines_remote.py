"""The openai engine against a local HTTP server started here; the vllm engine where installed."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from mathforge.engines import SamplingParams, load_engine
from mathforge.engines.openai_compat import OpenAIEngine
from mathforge.errors import MathforgeError


class FakeServer:
    """A tiny OpenAI-compatible /v1/completions server with scripted failures."""

    def __init__(self) -> None:
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
                try:
                    server.release.wait(5)
                    if failure is not None:
                        self._send(failure, {"error": {"message": f"scripted failure {failure}"}})
                    elif self.path != "/v1/completions" or body.get("max_tokens", 0) < 1:
                        self._send(400, {"error": {"message": "max_tokens must be at least 1"}})
                    else:
                        self._send(200, server.answer(body))
                finally:
                    with server.lock:
                        server.in_flight -= 1

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

    @staticmethod
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        prompt = body["prompt"]
        choices = []
        for index in range(body["n"]):
            if "code" in prompt:  # a server that leaves the stop string in the text
                text, reason, stop_reason = "x = 1\n```\n```output\nleaked", "stop", "```output"
            elif "long" in prompt:
                text, reason, stop_reason = "word " * body["max_tokens"], "length", None
            else:
                text, reason, stop_reason = f"echo {prompt} #{index}", "stop", None
            choice = {"index": index, "text": text, "finish_reason": reason, "stop_reason": stop_reason}
            if body.get("logprobs") is not None:  # two tokens, named by id when the prompt says so
                tokens = ["token_id:17", "token_id:4"] if "ids" in prompt else ["ec", "ho"]
                choice["logprobs"] = {"tokens": tokens, "token_logprobs": [-0.25, -0.5]}
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


def test_logprobs_and_token_ids_where_the_server_sends_them(server: FakeServer) -> None:
    engine = OpenAIEngine("m", base_url=server.url)
    plain = engine.generate(["a"], SamplingParams())[0][0]
    assert plain.logprobs is None and plain.sampled_ids is None
    assert "logprobs" not in server.requests[0]
    named, by_id = engine.generate(["a", "ids"], SamplingParams(logprobs=True))
    assert all(request["logprobs"] == 0 for request in server.requests[1:])
    assert named[0].logprobs == [-0.25, -0.5] and named[0].sampled_ids is None
    assert by_id[0].logprobs == [-0.25, -0.5] and by_id[0].sampled_ids == [17, 4]


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
