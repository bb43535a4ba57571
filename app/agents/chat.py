"""One chat-completion call, with the reply checked before anything reads it.

The `openai` client builds its response objects without validating them: a
body that is not JSON raises a `JSONDecodeError`, a deeply nested one a
`RecursionError`, and `{"choices": "not a list"}` comes back as a string to
index into. So the raw body is parsed here and checked against the few
fields the agents read; anything else is the endpoint's fault and raises
`EndpointFailed`, whose message names the endpoint, and the agents make it
the trial's `infra_error`. The client keeps its own retries of 429, 5xx and
dropped connections; what it gives up on is an `EndpointFailed` too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import openai
from pydantic import BaseModel, ConfigDict, Field, ValidationError

BODY_SHOWN_CHARS = 200  # of a body that is not JSON, quoted in the reason
TOKENS_MAX = 1_000_000_000  # per call: a larger reported count is not a real one


class EndpointFailed(Exception):
    """The model endpoint failed or answered with something that is not a chat completion."""


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    arguments: str  # JSON text, as the model wrote it: the workbench parses it


@dataclass(frozen=True)
class Reply:
    content: str
    tool_calls: tuple[ToolCall, ...]
    tokens_in: int
    tokens_out: int
    tokens_cached: int = 0  # of tokens_in, as the endpoint reports (OpenAI, vLLM)

    def as_message(self) -> dict[str, Any]:
        """The assistant message to send back with the rest of the conversation."""
        # Tool calls with no text go back with a null content, as models send them.
        content = (self.content or None) if self.tool_calls else self.content
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if self.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments},
                }
                for call in self.tool_calls
            ]
        return message


class _Read(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Function(_Read):
    name: str
    arguments: str = ""


class _ToolCall(_Read):
    id: str
    type: str = "function"
    function: _Function


class _Message(_Read):
    content: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Choice(_Read):
    message: _Message


class _PromptDetails(_Read):
    cached_tokens: int | None = Field(default=None, ge=0, le=TOKENS_MAX)


class _Usage(_Read):
    prompt_tokens: int = Field(default=0, ge=0, le=TOKENS_MAX)
    completion_tokens: int = Field(default=0, ge=0, le=TOKENS_MAX)
    prompt_tokens_details: _PromptDetails | None = None


class _Completion(_Read):
    choices: list[_Choice] = Field(min_length=1)
    usage: _Usage | None = None


def complete(client: openai.OpenAI, endpoint: str, **request: Any) -> Reply:
    """Send one chat-completion request to `endpoint` (its URL, for messages) and check it."""
    try:
        raw = client.chat.completions.with_raw_response.create(**request)
        body = raw.text
    except openai.APIError as error:
        raise EndpointFailed(f"model endpoint {endpoint} failed: {error}") from error
    try:
        data = json.loads(body)
    except RecursionError as error:
        raise EndpointFailed(f"model endpoint {endpoint} sent JSON nested too deep") from error
    except ValueError as error:
        shown = body[:BODY_SHOWN_CHARS]
        reason = f"model endpoint {endpoint} sent a body that is not JSON: {shown!r}"
        raise EndpointFailed(reason) from error
    try:
        completion = _Completion.model_validate(data)
    except ValidationError as error:
        first = error.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise EndpointFailed(
            f"model endpoint {endpoint} sent no chat completion: {where}: {first['msg']}"
        ) from error
    message = completion.choices[0].message
    usage = completion.usage or _Usage()
    return Reply(
        content=message.content or "",
        tool_calls=tuple(
            ToolCall(call.id, call.function.name, call.function.arguments)
            for call in message.tool_calls or []
            if call.type == "function"
        ),
        tokens_in=usage.prompt_tokens,
        tokens_out=usage.completion_tokens,
        # No more cached than sent, whatever the endpoint says.
        tokens_cached=min(details.cached_tokens or 0, usage.prompt_tokens)
        if (details := usage.prompt_tokens_details)
        else 0,
    )
