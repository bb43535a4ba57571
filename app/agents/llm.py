"""The LLM specialist: a tool-using session (`app.agents.session`, the default), or
single-shot, one prompt from the lineage digest and one edit back, for models without
tool calling.

Talks to any OpenAI-compatible endpoint (OpenAI, vLLM, Ollama) through the
`openai` client, which retries rate limits, 5xx and dropped connections with
exponential backoff. A reply that cannot become a diff is answered with the
reason and retried; after `MAX_REPLY_ATTEMPTS` the trial is `patch_rejected`.
An edit that parses but breaks the rules (outside the surface, protected) is
not retried here: it becomes the trial's `illegal_edit`, which later
prompts show. An endpoint that stays down, or answers with something that is
not a chat completion (`app.agents.chat`), is an `infra_error` naming the
endpoint, not the idea's.

Which endpoint an agent calls and which key it sends are decided by
`app.domain.endpoints`: never the client library's default host, and the
operator's key only to the operator's endpoint.
"""

from __future__ import annotations

import logging
from typing import cast

import openai
from openai.types.chat import ChatCompletionMessageParam

from app.agents.chat import EndpointFailed, complete
from app.agents.session import run_session
from app.agents.usage import add_usage, call_usage
from app.config import Settings
from app.domain.digest import build_messages
from app.domain.edits import MalformedEdit, parse_reply, render_diff
from app.domain.endpoints import NoEndpoint, endpoint_for
from app.domain.ideas import idea_fingerprint, repeat_refusal
from app.domain.legality import parse_diff
from app.domain.proposals import Proposal, ProposalFailed, ProposalJob, Usage, transcript_entry
from app.domain.roster import AgentSpec, LLMMode
from app.domain.states import Label
from app.errors import EditRejected
from app.gitstore import GitStore

logger = logging.getLogger(__name__)

MAX_REPLY_ATTEMPTS = 3
HTTP_RETRIES = 4  # the client's own backoff on 429, 5xx and connection errors
REQUEST_TIMEOUT_S = 300.0
NO_KEY = "unused"  # local endpoints (vLLM, Ollama) accept any key; the client needs one


class LLMAgent:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    def propose(self, job: ProposalJob, store: GitStore) -> Proposal:
        agent = job.agent
        assert agent.model is not None  # the spec requires a model for llm agents
        client, endpoint = self._client(agent)
        if agent.mode is LLMMode.SESSION:
            return run_session(client, endpoint, job, store)
        read = store.reader(job.parent_commit)
        messages = cast(list[ChatCompletionMessageParam], build_messages(job.digest))
        transcript = [transcript_entry(m["role"], str(m.get("content", ""))) for m in messages]
        usage = Usage()
        reason = ""
        for attempt in range(1, MAX_REPLY_ATTEMPTS + 1):
            try:
                reply = complete(
                    client,
                    endpoint,
                    model=agent.model,
                    messages=messages,
                    temperature=agent.temperature,
                    max_tokens=agent.max_output_tokens,
                )
            except EndpointFailed as error:
                raise ProposalFailed(Label.INFRA_ERROR, str(error), usage, transcript) from error
            usage = add_usage(usage, reply, agent)
            text = reply.content
            transcript.append(transcript_entry("assistant", text, usage=call_usage(reply, agent)))
            try:
                draft = parse_reply(text)
                diff = render_diff(draft.edits, read)
                parse_diff(diff)
                fingerprint = idea_fingerprint(diff)
                refusal = fingerprint and repeat_refusal(
                    job.tried(fingerprint), job.parent_number, job.spec.repeat_ideas
                )
                if refusal:
                    raise MalformedEdit(f"{refusal}; propose a different idea")
            except (MalformedEdit, EditRejected) as error:
                reason = str(error)
                logger.info(
                    "agent.reply_unusable trial_id=%s attempt=%s reason=%s",
                    job.trial_id,
                    attempt,
                    reason[:200],
                )
                retry = f"That reply could not be used: {reason}"
                messages += [
                    {"role": "assistant", "content": text},
                    {"role": "user", "content": retry},
                ]
                transcript.append(transcript_entry("user", retry))
                continue
            return Proposal(
                draft.hypothesis,
                diff,
                usage,
                transcript=transcript,
                expected_delta=draft.expected_delta,
                notes=draft.notes,
            )
        raise ProposalFailed(
            Label.PATCH_REJECTED,
            f"no usable reply in {MAX_REPLY_ATTEMPTS} attempts; last: {reason}",
            usage,
            transcript,
        )

    def _client(self, agent: AgentSpec) -> tuple[openai.OpenAI, str]:
        """A client bound to the agent's endpoint and its key, and that endpoint's URL.

        The spec was checked at submit; the settings of this worker may differ,
        so a missing endpoint or key is the trial's `infra_error`, naming it.
        """
        try:
            endpoint = endpoint_for(agent, self.settings.endpoint_policy)
        except NoEndpoint as refusal:
            raise ProposalFailed(Label.INFRA_ERROR, f"no model endpoint: {refusal}") from refusal
        key = self.settings.llm_key(endpoint)
        if endpoint.key_env is not None and key is None:
            reason = f"no key for {endpoint.base_url}: {endpoint.key_env} is not set on this worker"
            raise ProposalFailed(Label.INFRA_ERROR, reason)
        client = openai.OpenAI(
            base_url=endpoint.base_url,  # never None: the client would pick its default host
            api_key=key.get_secret_value() if key else NO_KEY,
            max_retries=HTTP_RETRIES,
            timeout=REQUEST_TIMEOUT_S,
        )
        return client, endpoint.base_url
