"""What specialists are told is true, complete and bounded (issue 16).

Invariants, read from the prompt a proposal's job renders (the store's
decisions, not labels alone): a discarded trial never appears as kept; the
top kept trials come best first with their gain over the baseline; what was
tried from the parent has an outcome; recent activity spans the agents; the
system message states the budgets, the keep rule with the measured noise
floor, every label's meaning and the role's preamble; the saturation note is
scaled to the noise floor; the first message stays bounded at 10,000 trials;
a failure repeated by many trials is shown once, naming them; the `lineage`
tool's first page is the prompt's summary, within its cap however many keeps,
and its later pages hold the recorded trials without repeating the summary.
"""

from __future__ import annotations

import time

import pytest
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.digest import (
    CHARS_PER_TOKEN,
    DEFAULT_PROMPT_TOKENS,
    Digest,
    TrialNote,
    build_messages,
    lineage_sections,
    saturation,
)
from app.domain.leaderboard import LABEL_MEANINGS
from app.domain.states import Decision, Direction, Label, TrialStatus
from app.domain.workbench import OUTPUT_CHARS, TrialRef, Workbench
from app.services.propose import load_job
from app.store.models import Search, Trial
from testing.factories import Recipe, add_trial, give_commit, seeded_search
from testing.proposals import Files


def prompt_of(session: Session, search: Search, parent: Trial) -> tuple[str, str]:
    """(system, user) messages of a fresh proposal of `opt` on `parent`."""
    give_commit(session, search, parent)
    trial = add_trial(session, search, agent="opt", parent=parent, label=None,
                      status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()
    job = load_job(session, trial.id)
    assert job is not None
    system, user = build_messages(job.digest)
    return system["content"], user["content"]


def test_the_prompt_shows_keeps_by_decision_best_first_and_never_a_discard_as_kept(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")  # trial 1 (0.70) is kept
    trials = {t.number: t for t in session.query(Trial).filter_by(search_id=search.id)}
    assert trials[4].decision is Decision.DISCARD  # 0.70 again: scored, not better

    system, user = prompt_of(session, search, trials[1])

    kept = user.split("# Top kept trials, best first (gain over the baseline)\n")[1]
    kept = kept.split("\n\n")[0]
    assert kept.splitlines() == [
        "- trial 1 by opt: ok (kept: became the best), score 0.7 "
        "(improvement over parent +0.2) (gain over the baseline +0.2): trial 1"
    ]
    assert "trial 4 by knobs: ok (discarded: not better than the best)" in user
    assert "# Other specialists' keeps" not in user  # the one keep is opt's own
    tried = user.split("# Already tried from this parent (do not repeat)\n")[1].split("\n\n")[0]
    assert "pending" not in tried  # the running trial 7 has no outcome to learn from
    recent = user.split("# Recent activity (all agents, newest last)\n")[1].split("\n\n")[0]
    assert all(f"by {agent}:" in recent for agent in ("opt", "arch", "knobs"))


def test_the_system_message_states_the_rules_of_this_search(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    best = session.get(Trial, search.best_trial_id)
    assert best is not None

    system, _ = prompt_of(session, search, best)

    assert "killed at 300s of wall-clock" in system
    assert "1 GiB (1,073,741,824 bytes) of memory" in system
    assert "at most 976.6 KiB (1,000,000 bytes)" in system
    assert "Keep rule: a scored trial becomes the new best only if it is strictly better" in system
    for label, meaning in LABEL_MEANINGS.items():
        assert f"{label.value}: {meaning}" in system
    assert "structural, mechanism-level change" in system  # the default preamble
    assert set(LABEL_MEANINGS) == set(Label)


def test_a_noise_spec_puts_the_measured_floor_in_the_keep_rule(
    session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    search.spec = {**search.spec, "noise": {"baseline_runs": 4, "confirm_runs": 3}}
    search.noise_sd = 0.0123
    session.commit()
    best = session.get(Trial, search.best_trial_id)
    assert best is not None

    system, _ = prompt_of(session, search, best)

    assert "the baseline's spread over 4 seeds: 0.0123" in system
    assert "by 1 noise floors to be confirmed on 3 fresh seeds" in system


def note(delta: float) -> TrialNote:
    return TrialNote(1, "opt", "x", "ok", 0.5, delta=delta, decision="discard")


@pytest.mark.parametrize(
    ("deltas", "floor", "fires"),
    [([0.01] * 5, 0.05, True), ([0.01, 0.01, 0.1, 0.01, 0.01], 0.05, False),
     ([0.0001] * 5, 1e-5, False), ([0.01] * 5, None, False)],
    ids=["inside the floor", "one moved past it", "a tiny floor", "no floor measured"],
)  # fmt: skip
def test_the_saturation_note_is_scaled_to_the_noise_floor(
    deltas: list[float], floor: float | None, fires: bool
) -> None:
    assert (saturation([note(d) for d in deltas], floor) is not None) is fires


def test_the_first_message_stays_bounded_at_ten_thousand_trials() -> None:
    many = [
        TrialNote(n, f"agent{n % 7}", f"idea {n} " * 30, "crash", None, reason="boom " * 50,
                  log_tail="Traceback\n" * 400, decision="discard", gain=0.1)
        for n in range(10_000)
    ]  # fmt: skip
    digest = Digest(
        task="t", metric="val_acc", direction=Direction.MAXIMIZE, gates=[], agent="opt",
        brief="b", surface=["train.py"], protected=[], parent=many[0],
        files={"train.py": "x = 1\n" * 10_000}, best=many[-1], best_ancestry=many,
        own_recent=many, others_keeps=many, recent_failures=many, tried_from_parent=many,
        kept=many, recent=many,
    )  # fmt: skip

    started = time.perf_counter()
    system, user = (message["content"] for message in build_messages(digest))
    took = time.perf_counter() - started

    assert len(system) + len(user) <= DEFAULT_PROMPT_TOKENS * CHARS_PER_TOKEN
    assert "[... 9989 steps ...]" in user  # the best line's head and tail, not all of it
    assert "idea 9999" in user  # the newest history survives the trimming
    assert took < 2.0


def digest_with(**sections: object) -> Digest:
    parent = TrialNote(0, "baseline", "the recipe as imported", "ok", 0.5, decision="baseline")
    fields: dict = dict(task="t", metric="val_acc", direction=Direction.MAXIMIZE, gates=[],
                        agent="opt", brief="b", surface=["train.py"], protected=[],
                        parent=parent, files={})  # fmt: skip
    return Digest(**{**fields, **sections})


def test_a_failure_many_trials_repeated_is_shown_once_naming_them() -> None:
    oom = [TrialNote(n, "arch", f"wider {n} layers", "oom", None, reason="out of memory at "
                     "4.0 GiB", decision="discard") for n in (3, 5, 8)]  # fmt: skip
    crash = TrialNote(9, "opt", "a new loss", "crash", None, reason="NameError: lossf")

    _, user = (m["content"] for m in build_messages(digest_with(recent_failures=[*oom, crash])))

    failures = user.split("# Recent failures (all agents)\n")[1].split("\n\n")[0]
    assert failures.count("out of memory at 4.0 GiB") == 1
    assert "- trial 8 by arch: oom" in failures and "(also trials 3, 5)" in failures
    assert "- trial 9 by opt: crash" in failures


def test_the_lineage_tool_pages_the_summary_once_and_then_every_recorded_trial() -> None:
    """With 30 keeps the old tool printed the whole best line on every page: no room was
    left for a single recent trial."""
    keeps = [TrialNote(n, "opt", f"keep number {n} " * 8, "ok", 0.5 + n / 100, delta=0.01,
                       decision="keep", gain=n / 100) for n in range(1, 31)]  # fmt: skip
    digest = digest_with(kept=list(reversed(keeps)), best_ancestry=keeps, best=keeps[-1])
    refs = {n: TrialRef(n, "opt", f"idea {n}", "crash" if n % 2 else "ok", None, None,
                        None, n - 1, log_tail=f"boom {n}") for n in range(1, 61)}  # fmt: skip
    summary = "\n\n".join(lineage_sections(digest))
    bench = Workbench(Files({"train.py": "x = 1\n"}), refs, refs[60], ["train.py"], [],
                      summary=summary)  # fmt: skip

    first, second, last = (bench.call("lineage", f'{{"page": {n}}}') for n in (1, 2, 7))
    _, user = (m["content"] for m in build_messages(digest))

    assert len(first) <= OUTPUT_CHARS and "[...cut]" not in first
    assert first.removesuffix("\n(more: lineage(page=2), of 7)") == summary and summary in user
    assert "[... 19 steps ...]" in first  # the best line's head and tail
    assert "keep number 30" in first
    assert "# How the best was reached" not in second and "keep number" not in second
    assert [line.split(" by ")[0] for line in second.splitlines() if "trial" in line[:9]] == [
        f"  trial {n}" for n in range(60, 50, -1)
    ]
    assert "boom 59" in second and "(more: lineage(page=3), of 7)" in second
    assert "trial 1 by" in last and "(more:" not in last
