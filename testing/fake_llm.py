"""An OpenAI-compatible chat endpoint on 127.0.0.1 that answers from a script.

It stands in for the model, which we do not own; the `openai` client under
test talks to it over real HTTP. Each agent (named in the system prompt as
"You are <name>,") gets its own queue of scripted answers: a reply text, an
HTTP status to fail with (the client must retry 429 and 5xx), tool calls, or
a `Raw` body sent as it is (a broken endpoint: not JSON, the wrong shape).
When an agent's queue is empty, `fallback(agent, n)` answers. Every request
is kept, with the usage reported for it and the key it carried, so tests can
read the prompts agents saw and which key went where. Like a real prefix
cache, it reports as cached the part of a prompt that repeats the start of
the same agent's previous one.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_AGENT = re.compile(r"You are (\S+?),")


@dataclass(frozen=True)
class Raw:
    """A response body sent byte for byte, with status 200 and a JSON content type."""

    body: bytes


# A reply's content, an HTTP status to fail with, tool calls: [(name, arguments), ...]
# (arguments as an object, or as the raw JSON text a model wrote), or a raw body.
Answer = str | int | list[tuple[str, dict[str, Any] | str]] | Raw


@dataclass(frozen=True)
class Exchange:
    agent: str
    prompt: str  # every message's content, joined
    messages: list[dict[str, Any]]
    answer: Answer
    prompt_tokens: int
    completion_tokens: int
    authorization: str = ""  # the request's Authorization header: which key it carried
    cached_tokens: int = 0  # of prompt_tokens: the start it shares with the agent's last prompt


class FakeLLM:
    def __init__(
        self,
        script: Mapping[str, Sequence[Answer]],
        fallback: Callable[[str, int], Answer],
        delay_s: float = 0.0,
    ) -> None:
        """`delay_s`: how long every answer takes (a slow model, for faults mid-proposal)."""
        self.delay_s = delay_s
        self._queues = {agent: deque(answers) for agent, answers in script.items()}
        self._fallback = fallback
        self._served: dict[str, int] = {}
        self._last_prompt: dict[str, str] = {}
        self._lock = threading.Lock()
        self.exchanges: list[Exchange] = []
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/v1"

    @contextmanager
    def running(self) -> Iterator[FakeLLM]:
        thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        thread.start()
        try:
            yield self
        finally:
            self._server.shutdown()
            self._server.server_close()

    def _answer(self, body: dict[str, Any], authorization: str) -> tuple[Answer, Exchange]:
        messages = body.get("messages", [])
        prompt = "\n".join(str(message.get("content", "")) for message in messages)
        found = _AGENT.search(prompt)
        agent = found.group(1) if found else "?"
        with self._lock:
            queue = self._queues.get(agent)
            if queue:
                answer: Answer = queue.popleft()
            else:
                self._served[agent] = self._served.get(agent, 0) + 1
                answer = self._fallback(agent, self._served[agent])
            if isinstance(answer, Raw):
                text = answer.body.decode(errors="replace")
            else:
                text = answer if isinstance(answer, str) else json.dumps(answer)
            shared = os.path.commonprefix([self._last_prompt.get(agent, ""), prompt])
            self._last_prompt[agent] = prompt
            exchange = Exchange(
                agent,
                prompt,
                messages,
                answer,
                len(prompt) // 4 + 1,
                len(text) // 4 + 1,
                authorization,
                len(shared) // 4,
            )
            self.exchanges.append(exchange)
        return answer, exchange

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                time.sleep(fake.delay_s)
                answer, exchange = fake._answer(body, self.headers.get("Authorization", ""))
                if isinstance(answer, Raw):
                    self._write(200, answer.body)
                    return
                if isinstance(answer, int):
                    self._send(answer, {"error": {"message": "scripted failure", "type": "x"}})
                    return
                message: dict[str, Any] = {"role": "assistant", "content": answer}
                if isinstance(answer, list):
                    message = {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": f"call_{len(fake.exchanges)}_{index}",
                                "type": "function",
                                "function": {
                                    "name": name,
                                    "arguments": args
                                    if isinstance(args, str)
                                    else json.dumps(args),
                                },
                            }
                            for index, (name, args) in enumerate(answer)
                        ],
                    }
                self._send(
                    200,
                    {
                        "id": f"chatcmpl-{len(fake.exchanges)}",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": body.get("model", "fake"),
                        "choices": [
                            {
                                "index": 0,
                                "message": message,
                                "finish_reason": "tool_calls"
                                if isinstance(answer, list)
                                else "stop",
                            }
                        ],
                        "usage": {
                            "prompt_tokens": exchange.prompt_tokens,
                            "completion_tokens": exchange.completion_tokens,
                            "total_tokens": exchange.prompt_tokens + exchange.completion_tokens,
                            "prompt_tokens_details": {"cached_tokens": exchange.cached_tokens},
                        },
                    },
                )

            def _send(self, status: int, payload: dict[str, Any]) -> None:
                self._write(status, json.dumps(payload).encode())

            def _write(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Silent: the exchanges are the record."""

        return Handler


def reply(hypothesis: str, *edits: dict[str, str]) -> str:
    """A well-formed agent reply with search/replace edits."""
    return json.dumps({"hypothesis": hypothesis, "expected_delta": 0.01, "edits": list(edits)})
