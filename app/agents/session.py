"""The agentic LLM specialist: one tool-using session per proposal.

As in the paper, a specialist is not a single prompt: each trial is a fresh
session that reads and greps the recipe, reads the shared lineage, diffs or
rebases onto another trial, checks its edit and submits. The session is
bounded by turns, tokens and wall-clock (from the agent's spec; the clock is
read before every model call and tool call, and inside long tools) and by a
cap on tool output; a model that repeats the same call with nothing changed
in between, or keeps answering in prose, is stopped. A session that ends
without a usable submission is still a trial, labelled, with its transcript,
and it never holds a sandbox slot (proposals run on their own queue).

The transcript keeps every message in full (the store compresses it), and
each model call's usage, cached prompt tokens included, beside its reply.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable
from typing import cast

import openai
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from app.agents.chat import EndpointFailed, complete
from app.agents.usage import add_usage, call_usage
from app.domain.digest import build_messages, lineage_sections
from app.domain.edits import HYPOTHESIS_MAX_CHARS
from app.domain.proposals import (
    Proposal,
    ProposalFailed,
    ProposalJob,
    Transcript,
    Usage,
    transcript_entry,
)
from app.domain.states import Label
from app.domain.workbench import TOOLS, TrialRef, Workbench
from app.gitstore import GitStore

logger = logging.getLogger(__name__)

SESSION_OUTPUT_CHARS = 120_000  # all tool output of one session
REPEAT_CAP = 3  # the same tool call (name and arguments) in one workbench state
TEXT_REPLIES = 3  # replies with no tool call: the third ends the session
NAME_CHARS = 100  # of a tool name the model made up, quoted in a reason
INSTRUCTIONS = (
    "Work only through the tools. Read and grep the recipe, study the lineage (what was "
    "tried, what failed and why), then make your edit with edit_file (several edits and "
    "files are fine), run check, and call submit(hypothesis, expected_delta, notes) once, "
    f"with a hypothesis of at most {HYPOTHESIS_MAX_CHARS} characters. Submit runs the check "
    "and refuses an edit that fails it or repeats an idea already tried. Submitting ends "
    "the session; an edit outside your files is refused."
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
        summary="\n\n".join(lineage_sections(job.digest)),
        out_of_time=lambda: clock() > deadline,
        tried=job.tried,
        repeat_ideas=job.spec.repeat_ideas,
    )
    messages = cast(
        list[ChatCompletionMessageParam], build_messages(job.digest, instructions=INSTRUCTIONS)
    )
    transcript: Transcript = [
        transcript_entry(m["role"], str(m.get("content", ""))) for m in messages
    ]
    usage, output_chars, text_replies = Usage(), 0, 0
    calls = Counter[tuple[str, str, tuple[int, int]]]()
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
            transcript_entry(
                "assistant",
                reply.content,
                [{"name": call.name, "arguments": call.arguments} for call in tool_calls],
                usage=call_usage(reply, agent),
            )
        )
        if not tool_calls:
            text_replies += 1
            if text_replies >= TEXT_REPLIES:
                raise fail(Label.NO_SUBMISSION, f"{text_replies} replies with no tool call")
            nudge = "Use the tools; call submit(hypothesis, expected_delta, notes) when ready."
            messages.append({"role": "user", "content": nudge})
            transcript.append(transcript_entry("user", nudge))
            continue
        for call in tool_calls:
            if clock() > deadline:
                raise fail(Label.NO_SUBMISSION, late)
            name, arguments = call.name, call.arguments
            key = (name, arguments, bench.state())
            calls[key] += 1
            if calls[key] > REPEAT_CAP:
                shown = f"{name[:NAME_CHARS]}({arguments[:NAME_CHARS]})"
                repeated = f"repeated {shown} {REPEAT_CAP + 1} times with nothing edited between"
                raise fail(Label.NO_SUBMISSION, repeated)
            output = bench.call(name, arguments)
            output_chars += len(output)
            if output_chars > SESSION_OUTPUT_CHARS:
                output = "tool output budget of this session is spent: submit now"
            messages.append({"role": "tool", "tool_call_id": call.id, "content": output})
            transcript.append(transcript_entry("tool", output, name=name[:NAME_CHARS]))
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
                notes=submission.notes,
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
