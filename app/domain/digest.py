"""What a specialist is told before it proposes: the lineage digest and the prompt.

The paper's lesson is that specialists improve on each other because they read
the shared, measured lineage, failures included. The digest is a frozen
snapshot of it; `build_messages` turns it into chat messages under a token
bound, dropping the least useful material first (older trials, then log
tails, then file tails) so the task, the rules and the files stay. Pure: the
service fills the digest from the store and git.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from app.domain.edits import REPLY_FORMAT
from app.domain.leaderboard import Standing, describe, outcome
from app.domain.states import Direction

CHARS_PER_TOKEN = 4  # a conservative estimate for code and English
DEFAULT_PROMPT_TOKENS = 12_000
LOG_TAIL_CHARS = 1200  # of each failure's log, where the traceback is
FILE_CHARS = 20_000  # of each surface file, before any further trimming
HYPOTHESIS_CHARS = 300
SATURATION_TRIALS = 5  # an agent's last trials considered for the saturation note
SATURATION_DELTA = 1e-3  # a change smaller than this counts as no change


@dataclass(frozen=True)
class TrialNote:
    """One trial as an agent sees it. `delta` is its improvement over its parent
    (positive is better, whichever the metric's direction)."""

    number: int
    agent: str
    hypothesis: str
    label: str | None
    score: float | None
    delta: float | None = None
    reason: str = ""
    log_tail: str = ""
    decision: str | None = None


@dataclass(frozen=True)
class Digest:
    task: str
    metric: str
    direction: Direction
    gates: Sequence[str]
    agent: str
    brief: str
    surface: Sequence[str]
    protected: Sequence[str]
    parent: TrialNote
    files: Mapping[str, str]  # the agent's surface files at the parent
    best: TrialNote | None = None
    best_ancestry: Sequence[TrialNote] = ()
    own_recent: Sequence[TrialNote] = ()
    others_keeps: Sequence[TrialNote] = ()
    recent_failures: Sequence[TrialNote] = ()
    tried_from_parent: Sequence[TrialNote] = field(default_factory=tuple)
    leaderboard: Sequence[Standing] = ()


def best_only(digest: Digest) -> Digest:
    """The digest of the `best_only` control study: the best line, nothing else shared."""
    return replace(
        digest,
        own_recent=(),
        others_keeps=(),
        recent_failures=(),
        tried_from_parent=(),
        leaderboard=(),
    )


def build_messages(
    digest: Digest, max_tokens: int = DEFAULT_PROMPT_TOKENS, instructions: str = REPLY_FORMAT
) -> list[dict[str, str]]:
    """System and user messages whose length stays within `max_tokens` (estimated).

    `instructions` end the system message: the JSON reply format for a
    single-shot agent, how to use the tools for a session.
    """
    system = _system(digest, instructions)
    budget = max_tokens * CHARS_PER_TOKEN - len(system)
    # Progressively leaner renderings: the first that fits wins.
    for history, log_chars, file_chars in (
        (10, LOG_TAIL_CHARS, FILE_CHARS),
        (6, LOG_TAIL_CHARS // 2, FILE_CHARS),
        (3, 200, FILE_CHARS // 2),
        (1, 0, FILE_CHARS // 4),
    ):
        user = _user(digest, history, log_chars, file_chars)
        if len(user) <= budget:
            break
    return [{"role": "system", "content": system}, {"role": "user", "content": user[:budget]}]


def _system(digest: Digest, instructions: str) -> str:
    better = "higher" if digest.direction.higher_is_better else "lower"
    gates = "; ".join(digest.gates) or "none"
    return (
        f"You are {digest.agent}, one specialist in a team improving a recipe by experiment. "
        f"Your brief: {digest.brief or 'improve the metric'}\n"
        f"Each proposal is one trial: a hypothesis and an edit to the parent recipe, run in a "
        f"sandbox and scored by an evaluator you cannot see. Metric: {digest.metric} "
        f"({better} is better). Gates every trial must pass: {gates}.\n"
        f"You may edit only: {', '.join(digest.surface)}. Never edit: "
        f"{', '.join(digest.protected) or 'nothing else is protected'}. Edits elsewhere are "
        "rejected as illegal. Do not repeat an edit already tried from this parent; learn from "
        "the failures shown.\n" + instructions
    )


def _user(digest: Digest, history: int, log_chars: int, file_chars: int) -> str:
    parts = [f"# Task\n{digest.task or '(no description)'}"]
    note = saturation(digest.own_recent)
    if note:
        parts.append(f"# Note\n{note}")
    parts.append("# Parent trial (your edit applies to it)\n" + _note(digest.parent, 0))
    if digest.best is not None:
        parts.append("# Best so far\n" + _note(digest.best, 0))
    if digest.leaderboard:
        rows = [f"- {describe(standing)}" for standing in digest.leaderboard]
        parts.append("# Leaderboard\n" + "\n".join(rows))
    if digest.best_ancestry:
        lines = [_note(note, 0) for note in digest.best_ancestry[-history:]]
        parts.append("# How the best was reached (oldest first)\n" + "\n".join(lines))
    sections = (
        ("# Your recent trials", digest.own_recent, log_chars),
        ("# Other specialists' keeps (each became the best)", digest.others_keeps, 0),
        ("# Recent failures (all agents)", digest.recent_failures, log_chars),
        ("# Already tried from this parent (do not repeat)", digest.tried_from_parent, 0),
    )
    for title, notes, logs in sections:
        if notes:
            parts.append(title + "\n" + "\n".join(_note(n, logs) for n in notes[-history:]))
    for path, content in digest.files.items():
        shown = content if len(content) <= file_chars else content[:file_chars] + "\n[...cut]"
        parts.append(f"# File {path} (at the parent)\n```\n{shown}\n```")
    return "\n\n".join(parts)


def saturation(own_recent: Sequence[TrialNote]) -> str | None:
    """A nudge when this agent's last trials all failed or barely moved the score."""
    last = list(own_recent)[-SATURATION_TRIALS:]
    if len(last) < SATURATION_TRIALS:
        return None
    stuck = all(
        note.label != "ok" or note.delta is None or abs(note.delta) < SATURATION_DELTA
        for note in last
    )
    if not stuck:
        return None
    return (
        f"Your last {SATURATION_TRIALS} trials all failed or moved the score by less than "
        f"{SATURATION_DELTA:g}: this direction looks saturated. Try a structurally different "
        "idea, or build on another specialist's win."
    )


def _note(note: TrialNote, log_chars: int) -> str:
    score = "-" if note.score is None else f"{note.score:.6g}"
    delta = "" if note.delta is None else f" (improvement over parent {note.delta:+.4g})"
    line = (
        f"- trial {note.number} by {note.agent}: {outcome(note.label, note.decision)}, "
        f"score {score}{delta}: {note.hypothesis[:HYPOTHESIS_CHARS]}"
    )
    if note.reason and note.label not in (None, "ok"):
        line += f"\n  reason: {note.reason[:HYPOTHESIS_CHARS]}"
    if log_chars and note.log_tail:
        line += "\n  log tail:\n    " + note.log_tail[-log_chars:].replace("\n", "\n    ")
    return line
