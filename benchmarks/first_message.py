"""The first message a specialist reads: its size and build time as the lineage grows.

A search on the bundled digits example gets `--trials` recorded trials
(keeps along a best line, discards, crashes with tracebacks, out-of-memory
and overruns, three LLM specialists and the control arm), written straight
into the store. Then, for `--proposals` new proposals, the time to load the
job from the store (every digest query) and render the session's first
message is measured. Run at 100 and at 10,000 trials, the figures say
whether it stays bounded and flat.

    PYTHONPATH=. python benchmarks/first_message.py --trials 100 10000
    PYTHONPATH=. python benchmarks/first_message.py --record examples/digits/first_message.md

`--record` writes the first message of a session on a small, realistic
lineage (the hypotheses a reader would see in a real search) as a reference
for newcomers, and measures nothing.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from app.agents.session import INSTRUCTIONS
from app.config import Settings
from app.db import session_scope
from app.domain.digest import CHARS_PER_TOKEN, DEFAULT_PROMPT_TOKENS, build_messages
from app.domain.spec import load_spec_file
from app.domain.states import Decision, Label, TrialStatus
from app.services.import_recipe import create_search
from app.services.propose import load_job
from app.store.models import Search, Trial
from benchmarks.scratch import scratch_store
from testing.factories import NO_MODEL  # an endpoint the spec check accepts; never called

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "digits" / "spec.yaml"
SPECIALISTS = ("optimizer", "architecture", "regulariser", "knobs")
TRACEBACK = (
    'Traceback (most recent call last):\n  File "/work/train.py", line 41, in main\n'
    '    logits, inputs = model.forward(params, xb)\n  File "/work/model.py", line 22, in '
    "forward\n    x = x @ params[i] + params[i + 1]\nValueError: matmul: Input operand 1 has a "
    "mismatch in its core dimension 0 (size 96 is different from 128)\n"
)
# A small lineage as a real search on the example might record it: (agent, parent number,
# hypothesis, label, score, decision, reason, log tail).
STORY: list[tuple[str, int, str, Label, float | None, Decision | None, str, str]] = [
    (
        "optimizer",
        0,
        "Raise the learning rate from 0.02 to 0.05: eight epochs of plain SGD "
        "stop well short of convergence, so larger steps should reach a better minimum.",
        Label.OK,
        0.9361,
        Decision.KEEP,
        "",
        "",
    ),
    (
        "architecture",
        1,
        "Widen the hidden layer from 64 to 128 units: the 8x8 digits are not "
        "linearly separable and a wider layer adds capacity the data can use.",
        Label.OK,
        0.9389,
        Decision.DISCARD,
        "",
        "",
    ),
    (
        "regulariser",
        1,
        "Add Gaussian input noise (sd 0.1 of the pixel range) during training: "
        "it regularises a model that already fits the training set almost perfectly.",
        Label.OK,
        0.9472,
        Decision.KEEP,
        "",
        "",
    ),
    (
        "knobs",
        3,
        "knobs: lr 0.05 -> 0.31, epochs 8 -> 22",
        Label.BUDGET_OVERRUN,
        None,
        None,
        "the run command passed its 60s wall-clock budget",
        "",
    ),
    (
        "architecture",
        3,
        "Add a second hidden layer of 96 units with He initialisation: depth "
        "composes stroke features that one layer must learn at once.",
        Label.CRASH,
        None,
        None,
        "exit status 1",
        TRACEBACK,
    ),
    (
        "optimizer",
        3,
        "Add momentum 0.9 to SGD: the loss curve oscillates between steep and "
        "flat directions; momentum averages them out and should converge further.",
        Label.OK,
        0.9528,
        Decision.KEEP,
        "",
        "",
    ),
    (
        "regulariser",
        6,
        "Random one-pixel shifts as augmentation: digit position varies in the "
        "held-out set and shifts teach the model translation invariance.",
        Label.OK,
        0.9500,
        Decision.DISCARD,
        "",
        "",
    ),
    (
        "knobs",
        6,
        "knobs: hidden 64 -> 240",
        Label.SIZE_FAILURE,
        None,
        None,
        "the artifact is 301,120 bytes; the cap is 256,000",
        "",
    ),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, nargs="+", default=[100, 10_000])
    parser.add_argument("--proposals", type=int, default=20)
    parser.add_argument("--database-url", help="a Postgres server URL; default: SQLite")
    parser.add_argument("--record", type=Path, help="write a reference first message here")
    args = parser.parse_args()
    if args.record:
        record(args.record)
        return
    bound = DEFAULT_PROMPT_TOKENS * CHARS_PER_TOKEN
    for trials in args.trials:
        with scratch_store(args.database_url) as (url, root):
            settings = Settings(database_url=url, data_dir=root / "data", llm_base_url=NO_MODEL)
            sizes, took = measure(settings, trials, args.proposals)
        print(  # noqa: T201
            f"{trials:>6} trials: first message {max(sizes):,} characters (bound {bound:,}); "
            f"load and render p50 {statistics.median(took):.0f} ms, max {max(took):.0f} ms "
            f"over {args.proposals} proposals"
        )


def new_search(session: Session, settings: Settings) -> Search:
    spec = load_spec_file(EXAMPLE)
    search = create_search(session, spec, settings=settings, actor="bench").search
    baseline = search_trial(session, search, 0)
    baseline.status, baseline.label, baseline.decision = (
        TrialStatus.FINISHED, Label.OK, Decision.BASELINE,
    )  # fmt: skip
    baseline.score, baseline.finished_at = 0.9222, datetime.now(UTC)
    session.flush()
    return search


def search_trial(session: Session, search: Search, number: int) -> Trial:
    trial = session.query(Trial).filter_by(search_id=search.id, number=number).one()
    return trial


def add(session: Session, search: Search, number: int, parent: Trial, agent: str,
        hypothesis: str, label: Label, score: float | None, decision: Decision | None,
        reason: str = "", log_tail: str = "") -> Trial:  # fmt: skip
    agents = {row.name: row.id for row in search.agents}
    assert parent.score is not None
    trial = Trial(
        search_id=search.id, number=number, parent_id=parent.id, agent_id=agents[agent],
        hypothesis=hypothesis, status=TrialStatus.FINISHED, label=label, decision=decision,
        score=score, delta=None if score is None else score - parent.score,
        label_reason=reason or None, log_tail=log_tail, commit_sha=parent.commit_sha,
        created_at=datetime.now(UTC) - timedelta(seconds=1e5 - number),
        finished_at=datetime.now(UTC),
    )  # fmt: skip
    session.add(trial)
    return trial


def grow(session: Session, search: Search, trials: int) -> None:
    """`trials` recorded trials: a keep every 50th along one line, the rest its failures."""
    best = search_trial(session, search, 0)
    for number in range(1, trials + 1):
        agent = SPECIALISTS[number % len(SPECIALISTS)]
        kind = number % 10
        if number % 50 == 0:
            assert best.score is not None
            best = add(session, search, number, best, agent, f"Idea {number}: a mechanism "
                       "that moved the held-out accuracy by a clear margin.", Label.OK,
                       best.score + 1e-4, Decision.KEEP)  # fmt: skip
            session.flush()
        elif kind < 5:
            assert best.score is not None
            add(session, search, number, best, agent, f"Idea {number}: a change that did not "
                "beat the best.", Label.OK, best.score - 1e-3, Decision.DISCARD)  # fmt: skip
        elif kind < 8:
            add(session, search, number, best, agent, f"Idea {number}: a deeper model.",
                Label.CRASH, None, None, "exit status 1", TRACEBACK * 3)  # fmt: skip
        else:
            add(session, search, number, best, agent, f"Idea {number}: a wider model.",
                Label.OOM, None, None, "killed at its 512 MiB memory limit")  # fmt: skip
    search.best_trial_id = best.id
    session.flush()


def first_message(session: Session, search: Search, number: int) -> tuple[str, str]:
    best = session.get(Trial, search.best_trial_id) if search.best_trial_id else None
    parent = best or search_trial(session, search, 0)
    optimizer = next(row for row in search.agents if row.name == "optimizer")
    proposal = Trial(search_id=search.id, number=number, parent_id=parent.id,
                     agent_id=optimizer.id, status=TrialStatus.PROPOSED)  # fmt: skip
    session.add(proposal)
    session.flush()
    job = load_job(session, proposal.id)
    assert job is not None
    system, user = (m["content"] for m in build_messages(job.digest, instructions=INSTRUCTIONS))
    return system, user


def measure(settings: Settings, trials: int, proposals: int) -> tuple[list[int], list[float]]:
    url = settings.resolved_database_url
    with session_scope(url) as session:
        search = new_search(session, settings)
        grow(session, search, trials)
        search_id = search.id
    sizes, took = [], []
    for n in range(proposals):
        with session_scope(url) as session:
            found = session.get(Search, search_id)
            assert found is not None
            started = time.perf_counter()
            system, user = first_message(session, found, trials + 1 + n)
            took.append((time.perf_counter() - started) * 1000)
            sizes.append(len(system) + len(user))
    return sizes, took


def record(path: Path) -> None:
    with scratch_store(None) as (url, root):
        settings = Settings(database_url=url, data_dir=root / "data", llm_base_url=NO_MODEL)
        with session_scope(url) as session:
            search = new_search(session, settings)
            line = {0: search_trial(session, search, 0)}
            for number, (
                agent,
                parent,
                hypothesis,
                label,
                score,
                decision,
                reason,
                log,
            ) in enumerate(STORY, start=1):
                line[number] = add(session, search, number, line[parent], agent, hypothesis,
                                   label, score, decision, reason, log)  # fmt: skip
                session.flush()
                if decision is Decision.KEEP:
                    search.best_trial_id = line[number].id
            system, user = first_message(session, search, len(STORY) + 1)
    path.write_text(
        "# The first message of a session (a reference)\n\n"
        "What the `optimizer` specialist of the bundled digits example reads when its "
        f"session opens, after {len(STORY)} trials. Made by the real code with\n"
        "`PYTHONPATH=. python benchmarks/first_message.py --record "
        "examples/digits/first_message.md`.\n\n"
        "The trials are written straight into the store, their edits not applied: the file "
        "shown is the baseline's.\n\n"
        f"## System message\n\n````text\n{system}\n````\n\n## First user message\n\n"
        f"````text\n{user}\n````\n"
    )
    print(f"wrote {path} ({len(system) + len(user):,} characters)")  # noqa: T201


if __name__ == "__main__":
    main()
