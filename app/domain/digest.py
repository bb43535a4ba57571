"""What a specialist is told before it proposes: the lineage digest and the prompt.

The paper's lesson is that specialists improve on each other because they read
the shared, measured lineage, failures included. The digest is a frozen
snapshot of it, at least as rich as the paper's context: the best and the
line that reached it (head and tail when long), a leaderboard of the top
kept trials with their gain over the baseline, this agent's own trials, the
other specialists' keeps, recent activity and failures across agents (each
failure once, naming the trials that repeated it), what was already tried
from the parent and from the best. The system message carries the rules of
this search: budgets, gates, the keep rule with the measured noise floor,
what each label means, the agent's surface and its role's preamble.

`build_messages` renders it under a token bound; every section has a
character budget of its own, and the least useful material goes first
(older trials, then log tails, then file tails), so the whole first message
stays bounded however long the search runs. Pure: the service fills the
digest from the store and git.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from app.domain.edits import REPLY_FORMAT
from app.domain.leaderboard import LABEL_MEANINGS, Standing, describe, outcome
from app.domain.noise import NoiseRule
from app.domain.spec import BudgetUnit, SearchSpec
from app.domain.states import Direction

CHARS_PER_TOKEN = 4  # a conservative estimate for code and English
DEFAULT_PROMPT_TOKENS = 12_000
LOG_TAIL_CHARS = 1200  # of each failure's log, where the traceback is
FILE_CHARS = 20_000  # of each surface file, before any further trimming
HYPOTHESIS_CHARS = 300
SATURATION_TRIALS = 5  # an agent's last trials considered for the saturation note
KEPT_SHOWN = 20  # top kept trials in the leaderboard section, as the paper's
BEST_LINE_HEAD, BEST_LINE_TAIL = 3, 8  # steps of a long best line shown from each end
SECTION_CHARS = {  # each section's own budget, before the whole message's bound
    "leaderboard": 1200,
    "kept": 3000,
    "best line": 2500,
    "best children": 1200,  # these four are also the `lineage` tool's page 1: under 8,000
    "recent": 4000,
    "own": 4000,
    "others": 3000,
    "failures": 6000,
    "tried": 2000,
}
DEFAULT_PREAMBLE = (
    "Make one structural, mechanism-level change per trial (a different schedule, "
    "architecture block, loss, regulariser or data pipeline), not a one-number tweak of a "
    "constant another trial already moved. Say which mechanism you change and why it "
    "should move the metric."
)


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
    gain: float | None = None  # improvement over the baseline's score (positive is better)
    expected_delta: float | None = None  # what its agent expected, beside the measured delta


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
    best_children: Sequence[TrialNote] = ()  # tried on the best, when it is not the parent
    leaderboard: Sequence[Standing] = ()
    kept: Sequence[TrialNote] = ()  # the top kept trials, best first, with their gain
    recent: Sequence[TrialNote] = ()  # the latest finished trials of every agent
    rules: Sequence[str] = ()  # this search's budgets and keep rule, one line each
    preamble: str = DEFAULT_PREAMBLE  # the agent's role: scope, limits, edit radius
    noise_floor: float | None = None  # a change smaller than this is noise (metric units)


def search_rules(spec: SearchSpec, noise_sd: float | None) -> list[str]:
    """This search's budgets and keep rule, in the words the system prompt uses."""
    budget = spec.budgets.trial
    cap = "none" if budget.artifact_max_bytes is None else _size(budget.artifact_max_bytes)
    rules = [
        f"Budget of each trial: the run command is killed at {budget.wallclock_s:g}s of "
        f"wall-clock; {_size(budget.memory)} of memory (swap included), {budget.cpus:g} "
        f"CPUs, {budget.gpus} GPUs; the artifact in /output may hold at most {cap}.",
    ]
    if budget.unit is BudgetUnit.CPU_SECONDS:
        rules.append(f"The budget that counts is {budget.limit:g} CPU-seconds: the CPU time of "
                     "every process of the run, counted by the kernel; the run is killed "
                     "there.")  # fmt: skip
    elif budget.unit.evaluator_counts:
        rules.append(f"The budget that counts is {budget.limit:g} {budget.unit}, as the "
                     f"evaluator's {budget.unit_metric} reports.")  # fmt: skip
    if spec.evaluator.worker is not None:
        rules.append(f"Evaluation is split: the evaluator asks your model through "
                     f"`{spec.evaluator.worker.command}` (run in the recipe, with its output "
                     "read-only and no held-out data) and computes the metric itself.")  # fmt: skip
    if spec.preflight is not None:
        rules.append(f"A preflight (`{spec.preflight.command}`, {spec.preflight.wallclock_s:g}s) "
                     "runs first; failing it ends the trial before the full run.")  # fmt: skip
    noise = spec.noise
    if noise is None:
        rules.append("Keep rule: a scored trial becomes the new best only if it is strictly "
                     "better than the current best; otherwise it is discarded.")  # fmt: skip
    else:
        floor = "not measured yet" if noise_sd is None else f"{noise_sd:.4g}"
        test = (f"by more than {noise.k:g} standard errors" if noise.rule is NoiseRule.SPREAD
                else f"in a one-sided Welch test at {noise.alpha:g}")  # fmt: skip
        rules.append(
            f"Keep rule: seed noise is measured (the baseline's spread over "
            f"{noise.baseline_runs} seeds: {floor}). A trial's first run must beat the best's "
            f"mean by {noise.nominate_k:g} noise floors to be confirmed on "
            f"{noise.confirm_runs} fresh seeds, and becomes the new best only if they beat "
            f"the best's runs {test}. Smaller gains are noise and are discarded."
        )
    return rules


def _size(count: float) -> str:
    """Bytes as a model reads them best: the exact count, and in binary units when large."""
    exact = f"{int(count):,} bytes"
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if count >= scale:
            return f"{count / scale:.4g} {unit} ({exact})"
    return exact


def best_only(digest: Digest) -> Digest:
    """The digest of the `best_only` control study: the best line, nothing else shared."""
    return replace(
        digest,
        own_recent=(),
        others_keeps=(),
        recent_failures=(),
        tried_from_parent=(),
        best_children=(),
        leaderboard=(),
        kept=(),
        recent=(),
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
    rules = "".join(f"- {rule}\n" for rule in digest.rules)
    return (
        f"You are {digest.agent}, one specialist in a team improving a recipe by experiment. "
        f"Your brief: {digest.brief or 'improve the metric'}\n"
        f"Your role: {digest.preamble}\n"
        f"Each proposal is one trial: a hypothesis and an edit to the parent recipe, run in a "
        f"sandbox and scored by an evaluator you cannot see. Metric: {digest.metric} "
        f"({better} is better). Gates every trial must pass: {gates}.\n"
        f"The rules of this search:\n{rules}"
        f"You may edit only: {', '.join(digest.surface)}. Never edit: "
        f"{', '.join(digest.protected) or 'nothing else is protected'}. Edits elsewhere are "
        "rejected as illegal. Do not repeat an idea already tried; learn from the failures "
        f"shown.\nWhat each outcome means: {glossary()}\n" + instructions
    )


def glossary() -> str:
    return "; ".join(f"{label.value}: {meaning}" for label, meaning in LABEL_MEANINGS.items())


def _user(digest: Digest, history: int, log_chars: int, file_chars: int) -> str:
    parts = [f"# Task\n{digest.task or '(no description)'}"]
    note = saturation(digest.own_recent, digest.noise_floor)
    if note:
        parts.append(f"# Note\n{note}")
    parts.append("# Parent trial (your edit applies to it)\n" + _note(digest.parent, 0))
    if digest.best is not None:
        parts.append("# Best so far\n" + _note(digest.best, 0))
    parts += lineage_sections(digest)
    sections = (
        ("# Recent activity (all agents, newest last)", digest.recent, 0, "recent"),
        ("# Your recent trials", digest.own_recent, log_chars, "own"),
        ("# Other specialists' keeps (each became the best)", digest.others_keeps, 0, "others"),
        ("# Recent failures (all agents)", digest.recent_failures, log_chars, "failures"),
        ("# Already tried from this parent (do not repeat)", digest.tried_from_parent, 0, "tried"),
    )
    for title, notes, logs, budget in sections:
        if notes:
            latest = _once_each(notes[-history:]) if budget == "failures" else notes[-history:]
            rows = [_note(n, logs) for n in latest]
            parts.append(_section(title, rows, SECTION_CHARS[budget], newest_last=True))
    for path, content in digest.files.items():
        shown = content if len(content) <= file_chars else content[:file_chars] + "\n[...cut]"
        parts.append(f"# File {path} (at the parent)\n```\n{shown}\n```")
    return "\n\n".join(parts)


def lineage_sections(digest: Digest) -> list[str]:
    """The lineage at a glance: the agents' leaderboard, the top kept trials, the line to
    the best and what was tried on the best. The prompt opens with it and the `lineage`
    tool's first page is it, so what a session reads twice says the same."""
    parts = []
    if digest.leaderboard:
        rows = [f"- {describe(standing)}" for standing in digest.leaderboard]
        parts.append(_section("# Leaderboard (agents)", rows, SECTION_CHARS["leaderboard"]))
    if digest.kept:
        rows = [_note(n, 0) for n in digest.kept[:KEPT_SHOWN]]
        parts.append(_section("# Top kept trials, best first (gain over the baseline)",
                              rows, SECTION_CHARS["kept"]))  # fmt: skip
    if digest.best_ancestry:
        steps = _best_line(digest.best_ancestry)
        title = "# How the best was reached (from the baseline)"
        parts.append(_section(title, steps, SECTION_CHARS["best line"]))
    if digest.best_children:
        rows = [_note(n, 0) for n in digest.best_children]
        parts.append(_section("# Already tried on the best (do not repeat)", rows,
                              SECTION_CHARS["best children"], newest_last=True))  # fmt: skip
    return parts


def _once_each(failures: Sequence[TrialNote]) -> list[TrialNote]:
    """Failures with the same label and reason shown once, the newest, naming the others:
    ten trials that hit one out-of-memory teach one lesson, not ten."""
    groups: dict[tuple[str | None, str], list[TrialNote]] = {}
    for note in failures:
        reason = note.reason[:HYPOTHESIS_CHARS] or f"(trial {note.number})"
        groups.setdefault((note.label, reason), []).append(note)
    shown = []
    for group in groups.values():
        *older, newest = group
        if older:
            others = ", ".join(str(note.number) for note in older)
            reason = f"{newest.reason[: HYPOTHESIS_CHARS // 2]} (also trials {others})"
            newest = replace(newest, reason=reason)
        shown.append(newest)
    return sorted(shown, key=lambda note: note.number)


def _section(title: str, rows: Sequence[str], chars: int, newest_last: bool = False) -> str:
    """A titled section within its own budget, in whole rows: the first ones kept, or with
    `newest_last` the last ones (the newest, the most useful of a history)."""
    ordered = list(reversed(rows)) if newest_last else list(rows)
    kept, used = list[str](), len(title)
    for row in ordered:
        if used + len(row) + 1 > chars:
            break
        kept.append(row)
        used += len(row) + 1
    if len(kept) < len(rows):
        kept.append(f"[{len(rows) - len(kept)} {'older ' if newest_last else ''}not shown]")
    return title + "\n" + "\n".join(reversed(kept) if newest_last else kept)


def _best_line(ancestry: Sequence[TrialNote]) -> list[str]:
    """The line from the baseline to the best: its head and its tail when it is long."""
    steps = [_note(note, 0) for note in ancestry]
    if len(steps) <= BEST_LINE_HEAD + BEST_LINE_TAIL:
        return steps
    skipped = len(steps) - BEST_LINE_HEAD - BEST_LINE_TAIL
    return [*steps[:BEST_LINE_HEAD], f"  [... {skipped} steps ...]", *steps[-BEST_LINE_TAIL:]]


def saturation(own_recent: Sequence[TrialNote], noise_floor: float | None) -> str | None:
    """A nudge when this agent's last trials all failed or moved the score by no more than
    the noise floor (the baseline's spread over seeds, else the spread of the search's
    scores): a threshold in the metric's own scale, not an absolute number."""
    last = list(own_recent)[-SATURATION_TRIALS:]
    if len(last) < SATURATION_TRIALS:
        return None
    floor = noise_floor or 0.0
    stuck = all(
        note.label != "ok" or note.delta is None or abs(note.delta) <= floor for note in last
    )
    if not stuck:
        return None
    moved = f"no more than the noise floor ({floor:.3g})" if floor else "not at all"
    return (
        f"Your last {SATURATION_TRIALS} trials all failed or moved the score {moved}: this "
        "direction looks saturated. Try a structurally different idea, or build on another "
        "specialist's keep."
    )


def _note(note: TrialNote, log_chars: int) -> str:
    score = "-" if note.score is None else f"{note.score:.6g}"
    delta = "" if note.delta is None else f" (improvement over parent {note.delta:+.4g})"
    if note.gain is not None:
        delta += f" (gain over the baseline {note.gain:+.4g})"
    if note.expected_delta is not None:
        delta += f" (its agent expected {note.expected_delta:+.4g})"
    line = (
        f"- trial {note.number} by {note.agent}: {outcome(note.label, note.decision)}, "
        f"score {score}{delta}: {note.hypothesis[:HYPOTHESIS_CHARS]}"
    )
    if note.reason and note.label not in (None, "ok"):
        line += f"\n  reason: {note.reason[:HYPOTHESIS_CHARS]}"
    if log_chars and note.log_tail:
        line += "\n  log tail:\n    " + note.log_tail[-log_chars:].replace("\n", "\n    ")
    return line
