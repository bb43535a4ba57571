"""The lineage store: searches, their agents, their trials (a tree via `parent_id`) and events.

A trial's pipeline position (`status`) and its outcome (`label`) are separate
columns: a finished trial can be `ok` or any failure, and a crash stores a
NULL score with its label, never a sentinel number. Indexes follow the API's
queries: trials by search and score, by agent, by label, by status, by parent.
"""

from __future__ import annotations

import json
import zlib
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

from app.db import Base
from app.domain.spec import SearchSpec
from app.domain.states import Decision, Label, SearchStatus, TrialStatus


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """tz-aware UTC on every backend (SQLite drops the zone; we put it back on read)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime; Trialforge stores tz-aware UTC only")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


E = TypeVar("E", bound=StrEnum)


class StrEnumColumn(TypeDecorator[E]):
    """A str enum stored as plain text (no DB enum type to migrate) and read back as the enum."""

    impl = String
    cache_ok = True

    def __init__(self, enum: type[E], length: int) -> None:
        super().__init__(length)
        self.enum = enum

    def process_bind_param(self, value: E | str | None, dialect: Dialect) -> str | None:
        return None if value is None else self.enum(value).value

    def process_result_value(self, value: str | None, dialect: Dialect) -> E | None:
        return None if value is None else self.enum(value)


class CompressedJSON(TypeDecorator[Any]):
    """JSON stored zlib-compressed: a whole agent session (a 50 KB first message, every
    tool result) is kept in full at a fraction of its size, and read back as it was."""

    impl = LargeBinary
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Dialect) -> bytes | None:
        return None if value is None else zlib.compress(json.dumps(value).encode(), 6)

    def process_result_value(self, value: bytes | None, dialect: Dialect) -> Any:
        return None if value is None else json.loads(zlib.decompress(value))


ROLLUP_COLUMNS = (
    "search_id",
    "number",
    "status",
    "label",
    "agent_id",
    "score",
    "delta",
    "cost_usd",
    "wallclock_s",
    "tokens_in",
    "tokens_out",
)


class Search(Base):
    __tablename__ = "search"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    status: Mapped[SearchStatus] = mapped_column(StrEnumColumn(SearchStatus, 16), index=True)
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)
    repo_path: Mapped[str] = mapped_column(Text)
    base_commit: Mapped[str] = mapped_column(String(64))
    best_trial_id: Mapped[int | None] = mapped_column(
        ForeignKey("trial.id", use_alter=True, ondelete="SET NULL")
    )
    evaluator_digest: Mapped[str | None] = mapped_column(
        String(64), doc="sha256 of the evaluator's files and held-out data at creation."
    )
    noise_sd: Mapped[float | None] = mapped_column(
        Float, doc="Spread of the baseline's score over seeds: the noise floor."
    )
    rollup_blocks: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="Leading blocks of trials in trial_rollup."
    )
    halt_reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agents: Mapped[list[Agent]] = relationship(
        back_populates="search", order_by="Agent.id", cascade="all, delete-orphan"
    )

    @property
    def search_spec(self) -> SearchSpec:
        """The stored spec, typed: the one way any reader gets at it.

        Parsed once per loaded row (and again only if `spec` is replaced), so
        a trial's path through the loop does not re-validate it at every step.
        """
        cached: tuple[dict[str, Any], SearchSpec] | None = self.__dict__.get("_typed_spec")
        if cached is None or cached[0] is not self.spec:
            cached = (self.spec, SearchSpec.model_validate(self.spec))
            self.__dict__["_typed_spec"] = cached
        return cached[1]


class Agent(Base):
    """One specialist of a search's roster; its spec is copied so the record stands alone."""

    __tablename__ = "agent"
    __table_args__ = (UniqueConstraint("search_id", "name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("search.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    spec: Mapped[dict[str, Any]] = mapped_column(JSON)

    search: Mapped[Search] = relationship(back_populates="agents")


class Trial(Base):
    __tablename__ = "trial"
    __table_args__ = (
        UniqueConstraint("search_id", "number"),
        Index("ix_trial_search_score", "search_id", "score"),
        Index("ix_trial_search_agent", "search_id", "agent_id"),
        Index("ix_trial_agent_number", "agent_id", "number"),
        Index("ix_trial_search_label", "search_id", "label"),
        Index("ix_trial_search_status_number", "search_id", "status", "number"),
        Index("ix_trial_search_edit", "search_id", "edit_hash"),
        Index("ix_trial_search_idea", "search_id", "idea_hash"),
        # Covers every per-search aggregate the dashboard draws, so they read no table rows.
        Index("ix_trial_rollup", *ROLLUP_COLUMNS),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("search.id", ondelete="CASCADE"))
    number: Mapped[int] = mapped_column(Integer, doc="0 is the baseline; counts up per search.")
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("trial.id", ondelete="SET NULL"), index=True
    )
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="SET NULL"))

    hypothesis: Mapped[str] = mapped_column(Text, default="")
    diff: Mapped[str] = mapped_column(Text, default="")
    commit_sha: Mapped[str | None] = mapped_column(String(64))
    edit_hash: Mapped[str | None] = mapped_column(
        String(64), doc="The tree the edit produced: equal for two edits that do the same."
    )
    idea_hash: Mapped[str | None] = mapped_column(
        String(64), doc="Its changed lines (app.domain.ideas): equal for one idea on two parents."
    )

    status: Mapped[TrialStatus] = mapped_column(StrEnumColumn(TrialStatus, 16))
    label: Mapped[Label | None] = mapped_column(StrEnumColumn(Label, 32))
    decision: Mapped[Decision | None] = mapped_column(StrEnumColumn(Decision, 24))
    label_reason: Mapped[str | None] = mapped_column(Text)
    score: Mapped[float | None] = mapped_column(Float)
    expected_delta: Mapped[float | None] = mapped_column(
        Float, doc="The gain over its parent the proposing agent expected (its own guess)."
    )
    delta: Mapped[float | None] = mapped_column(
        Float, doc="Improvement over the parent's score (positive is better, by direction)."
    )
    metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    params: Mapped[dict[str, Any] | None] = mapped_column(
        JSON, doc="The declared knobs' values in its recipe, whoever edited it (name: value)."
    )

    wallclock_s: Mapped[float | None] = mapped_column(
        Float, doc="Sandbox seconds of its training runs: every seed, the preflight too."
    )
    eval_s: Mapped[float | None] = mapped_column(
        Float, doc="Sandbox seconds of its evaluations, every seed's."
    )
    confirm_s: Mapped[float] = mapped_column(
        Float,
        default=0.0,
        server_default="0",
        doc="Of its sandbox seconds, those of its confirmation on fresh seeds (a nominee's).",
    )
    cpu_s: Mapped[float | None] = mapped_column(
        Float, doc="CPU seconds of its training runs' processes, every seed's (kernel-counted)."
    )
    artifact_bytes: Mapped[int | None] = mapped_column(BigInteger)
    log_tail: Mapped[str] = mapped_column(Text, default="")
    evaluator_digest: Mapped[str | None] = mapped_column(
        String(64), doc="The evaluator and data digest this trial was scored with."
    )
    transcript: Mapped[list[dict[str, Any]] | None] = mapped_column(
        "transcript_z",
        CompressedJSON,
        deferred=True,  # read on a trial's own page and in the export, never in lists
        doc="The agent's messages in full (every prompt, reply, tool call and result), "
        "with each model call's usage.",
    )
    notes: Mapped[str | None] = mapped_column(
        Text, doc="What the agent added to its hypothesis: caveats, what to try next."
    )
    image: Mapped[str | None] = mapped_column(Text)
    image_digest: Mapped[str | None] = mapped_column(String(128))
    isolated: Mapped[bool | None] = mapped_column(doc="False when run by the local runner.")

    tokens_in: Mapped[int] = mapped_column(Integer, default=0)
    tokens_out: Mapped[int] = mapped_column(Integer, default=0)
    tokens_cached: Mapped[int] = mapped_column(
        Integer, default=0, doc="Of tokens_in, those the endpoint served from its prompt cache."
    )
    cost_usd: Mapped[float] = mapped_column(Float, default=0.0)

    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sent_at: Mapped[datetime | None] = mapped_column(
        UTCDateTime, doc="When its latest task message (propose or run) was sent, for re-sends."
    )
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    agent: Mapped[Agent | None] = relationship()


class TrialRollup(Base):
    """Aggregates of settled trials per block of trial numbers, agent, status and label.

    A trial below a search's lowest unfinished number never changes again, so
    its block is summed once (`app.store.rollup`) and the search page re-reads a few
    thousand of these rows instead of every trial of a large search.
    """

    __tablename__ = "trial_rollup"
    __table_args__ = (Index("ix_trial_rollup_search_block", "search_id", "block"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("search.id", ondelete="CASCADE"))
    block: Mapped[int] = mapped_column(Integer, doc="Trial numbers block*BLOCK .. +BLOCK-1.")
    agent_id: Mapped[int | None] = mapped_column(ForeignKey("agent.id", ondelete="CASCADE"))
    status: Mapped[TrialStatus] = mapped_column(
        StrEnumColumn(TrialStatus, 16), doc="finished or cancelled: what settles."
    )
    label: Mapped[Label | None] = mapped_column(StrEnumColumn(Label, 32))
    count: Mapped[int] = mapped_column(Integer)
    best: Mapped[float | None] = mapped_column(Float, doc="Best score, by the search's direction.")
    keeps: Mapped[int] = mapped_column(Integer, doc="Trials that became the new best.")
    best_delta: Mapped[float | None] = mapped_column(Float, doc="Largest gain of an ok trial.")
    tokens: Mapped[int] = mapped_column(BigInteger)
    cost_usd: Mapped[float] = mapped_column(Float)
    wallclock_s: Mapped[float] = mapped_column(Float, doc="Sandbox time of their training.")
    eval_s: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0", doc="Sandbox time of their evaluations."
    )
    confirm_s: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0", doc="Sandbox time of their confirmations."
    )
    cpu_s: Mapped[float] = mapped_column(
        Float, default=0.0, server_default="0", doc="CPU time of their training, where measured."
    )
    cpu_trials: Mapped[int] = mapped_column(
        Integer, default=0, server_default="0", doc="How many of them had CPU time measured."
    )


class Event(Base):
    """Append-only audit log: who did what to which search or trial, and when."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_search_id_id", "search_id", "id"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    search_id: Mapped[int] = mapped_column(ForeignKey("search.id", ondelete="CASCADE"))
    trial_id: Mapped[int | None] = mapped_column(ForeignKey("trial.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(64))
    actor: Mapped[str] = mapped_column(String(200))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
