"""The agentic LLM specialist: one tool-using session per proposal.

As in the paper, a specialist is not a single prompt: each trial is a fresh
session that reads and greps the recipe, reads the shared lineage, diffs or
rebases onto another trial, checks its edit and submits. The session is
bounded by turns, tokens and wall-clock (from the agent's spec; the clock is
read before every model call and tool call, and inside long tools) and by a
cap on tool output; a model that repeats the same call is stopped. A session
that ends without a usable submission is still a trial, labelled, with its
transcript, and it never holds a sandbox slot (proposals run on their own
queue).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, cast

import openai
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from app.agents.chat import EndpointFailed, complete
from app.agents.usage import add_usage
from app.domain.digest import build_messages
from app.domain.edits import HYPOTHESIS_MAX_CHARS
from app.domain.proposals import Proposal, ProposalFailed, ProposalJob, Transcript, Usage
from app.domain.states import Label
from app.domain.workbench import TOOLS, TrialRef, Workbench
from app.gitstore import GitStore

logger = logging.getLogger(__name__)

SESSION_OUTPUT_CHARS = 120_000  # all tool output of one session
REPEAT_CAP = 3  # identical tool calls (same name and arguments) allowed per session
TRANSCRIPT_CHARS = 2000  # per message or tool result kept in the transcript
INSTRUCTIONS = (
    "Work only through the tools. Read and grep the recipe, study the lineage (what was "
    "tried, what failed and why), then make your edit with edit_file (several edits and "
    "files are fine), run check, and call submit(hypothesis, expected_delta) once, with a "
    f"hypothesis of at most {HYPOTHESIS_MAX_CHARS} characters. "
    "Submitting ends the session; an edit outside your files is refused."
)


def run_session(
    client: openai.OpenAI,
    endpoint: str,
    job: ProposalJob,
    store: GitStore,
    clock: Callable[[], float] = time.monotonic,
) -> Proposal:
    """One session against `endpoint` (the client's URL, named in failures)."""
    agent = job.agent
    assert agent.model is not None  # the spec requires a model for llm agents
    deadline = clock() + agent.session_wallclock_s
    bench = Workbench(
        repo=store,
        trials={ref.number: ref for ref in job.trials},
        base=_parent_ref(job),
        surface=agent.surface.editable,
        protected=job.spec.evaluator.protected,
        best_line=job.best_line,
        leaderboard=job.leaderboard,
        out_of_time=lambda: clock() > deadline,
    )
    messages = cast(
        list[ChatCompletionMessageParam], build_messages(job.digest, instructions=INSTRUCTIONS)
    )
    transcript: Transcript = [_entry(m["role"], str(m.get("content", ""))) for m in messages]
    usage, calls, output_chars = Usage(), Counter[tuple[str, str]](), 0
    late = f"session passed its {agent.session_wallclock_s:g}s"

    def fail(label: Label, reason: str) -> ProposalFailed:
        logger.info("session.ended trial_id=%s label=%s reason=%s", job.trial_id, label, reason)
        return ProposalFailed(label, reason, usage, transcript)

    for _ in range(agent.max_turns):
        if clock() > deadline:
            raise fail(Label.NO_SUBMISSION, late)
        if usage.tokens_in + usage.tokens_out >= agent.max_session_tokens:
            raise fail(Label.NO_SUBMISSION, f"session used its {agent.max_session_tokens} tokens")
        try:
            reply = complete(
                client,
                endpoint,
                model=agent.model,
                messages=messages,
                tools=cast(list[ChatCompletionToolParam], TOOLS),
                temperature=agent.temperature,
                max_tokens=agent.max_output_tokens,
            )
        except EndpointFailed as error:
            raise fail(Label.INFRA_ERROR, str(error)) from error
        usage = add_usage(usage, reply, agent)
        tool_calls = reply.tool_calls
        messages.append(cast(ChatCompletionMessageParam, reply.as_message()))
        transcript.append(
            _entry(
                "assistant",
                reply.content,
                [{"name": call.name, "arguments": call.arguments} for call in tool_calls],
            )
        )
        if not tool_calls:
            nudge = "Use the tools; call submit(hypothesis, expected_delta) when ready."
            messages.append({"role": "user", "content": nudge})
            transcript.append(_entry("user", nudge))
            continue
        for call in tool_calls:
            if clock() > deadline:
                raise fail(Label.NO_SUBMISSION, late)
            name, arguments = call.name, call.arguments
            calls[(name, arguments)] += 1
            if calls[(name, arguments)] > REPEAT_CAP:
                repeated = f"repeated {_cut(name)}({_cut(arguments)}) past the cap"
                raise fail(Label.NO_SUBMISSION, repeated)
            output = bench.call(name, arguments)
            output_chars += len(output)
            if output_chars > SESSION_OUTPUT_CHARS:
                output = "tool output budget of this session is spent: submit now"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
            transcript.append(_entry("tool", output, name=_cut(name)))
            if bench.submission is not None:
                break
        submission = bench.submission
        if submission is not None:
            if not submission.diff:
                raise fail(Label.PATCH_REJECTED, "submitted an empty edit")
            return Proposal(
                submission.hypothesis,
                submission.diff,
                usage,
                parent_number=submission.parent_number,
                transcript=transcript,
                expected_delta=submission.expected_delta,
            )
    raise fail(Label.NO_SUBMISSION, f"no submission in {agent.max_turns} turns")


def _parent_ref(job: ProposalJob) -> TrialRef:
    for ref in job.trials:
        if ref.number == job.parent_number:
            return ref
    parent = job.digest.parent
    return TrialRef(
        number=job.parent_number,
        agent=parent.agent,
        hypothesis=parent.hypothesis,
        label=parent.label,
        score=parent.score,
        delta=parent.delta,
        commit=job.parent_commit,
        parent_number=None,
        decision=parent.decision,
    )


def _entry(
    role: str, content: str, tool_calls: list[dict[str, str]] | None = None, name: str = ""
) -> dict[str, Any]:
    entry: dict[str, Any] = {"role": role, "content": _cut(content)}
    if tool_calls:
        entry["tool_calls"] = [
            {"name": _cut(c["name"]), "arguments": _cut(c["arguments"])} for c in tool_calls
        ]
    if name:
        entry["name"] = name
    return entry


def _cut(text: str) -> str:
    return text if len(text) <= TRANSCRIPT_CHARS else text[:TRANSCRIPT_CHARS] + "[...cut]"
