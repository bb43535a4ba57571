"""Trialforge's own time per tool call in an agent session, with an instant fake model.

Each session makes 10 tool calls (read, grep, lineage, trial, diff, edits,
check, submit) against a search with `--trials` recorded trials, through
the real `openai` client and HTTP to a scripted local model that answers
at once; so the time per call is ours: the HTTP round trip, the tool (git
reads, grep, lineage rendering) and the session bookkeeping.

    PYTHONPATH=. python benchmarks/session_tools.py --sessions 30 --trials 500
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from sqlalchemy import select

from app.agents.llm import LLMAgent
from app.config import Settings
from app.db import session_scope
from app.domain.spec import parse_spec
from app.domain.states import Label, TrialStatus
from app.gitstore import GitStore
from app.services.import_recipe import create_search
from app.services.propose import load_job
from app.store.models import Trial
from benchmarks.scratch import scratch_store
from testing.factories import add_trial, make_recipe, spec_dict
from testing.fake_llm import FakeLLM

CALLS = [
    [("read_file", {"path": "train.py"})],
    [("grep", {"pattern": "LR|EPOCHS"})],
    [("lineage", {})],
    [("lineage", {"page": 2})],
    [("trial", {"number": 1})],
    [("diff", {"a": 0, "b": 1})],
    [("edit_file", {"path": "train.py", "search": "EPOCHS = 3", "replace": "EPOCHS = 4"})],
    [("read_file", {"path": "train.py", "start_line": 1, "end_line": 3})],
    [("check", {})],
    [("submit", {"hypothesis": "One more epoch."})],
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    parser.add_argument("--trials", type=int, default=500)
    args = parser.parse_args()
    with scratch_store(None) as (url, root):
        fake = FakeLLM({"opt": CALLS * args.sessions}, lambda agent, n: "done")
        with fake.running():
            settings = Settings(database_url=url, data_dir=root / "data",
                                llm_base_url=fake.base_url)  # fmt: skip
            per_call = run(settings, root, args)
    print(  # noqa: T201
        f"{args.sessions} sessions of {len(CALLS)} tool calls, {args.trials} trials in the "
        f"lineage: per call p50 {statistics.median(per_call):.1f} ms, "
        f"max {max(per_call):.1f} ms (target < 50 ms)"
    )


def run(settings: Settings, root: Path, args: argparse.Namespace) -> list[float]:
    url = settings.resolved_database_url
    agents = [{"name": "opt", "kind": "llm", "model": "fake", "max_turns": 20,
               "surface": {"paths": ["train.py"]}}]  # fmt: skip
    with session_scope(url) as session:
        search = create_search(
            session, parse_spec(spec_dict(make_recipe(root), agents=agents)),
            settings=settings, actor="bench",
        ).search  # fmt: skip
        baseline = session.scalar(select(Trial).where(Trial.search_id == search.id))
        assert baseline is not None
        baseline.status, baseline.label, baseline.score = TrialStatus.FINISHED, Label.OK, 0.5
        for n in range(args.trials):
            label = Label.CRASH if n % 3 else Label.OK
            trial = add_trial(session, search, agent="opt", parent=baseline, label=label,
                              score=0.5 + n / 1e4)  # fmt: skip
            trial.commit_sha, trial.log_tail = baseline.commit_sha, "Traceback\nboom\n"
        search_id = search.id
    per_call = []
    for _ in range(args.sessions):
        with session_scope(url) as session:
            found = session.get(type(search), search_id)
            assert found is not None
            proposal = add_trial(session, found, agent="opt", parent=baseline, label=None,
                                 status=TrialStatus.PROPOSED)  # fmt: skip
            session.flush()
            job = load_job(session, proposal.id)
        assert job is not None
        started = time.perf_counter()
        LLMAgent(settings).propose(job, GitStore(job.repo_path))
        per_call.append((time.perf_counter() - started) * 1000 / len(CALLS))
    return per_call


if __name__ == "__main__":
    main()
