"""A minimised metric shows the same gains as a maximised one, everywhere (issue 13).

Invariant: every delta, improvement, best, sort and chart goes through
`Direction.gain`. Two searches record mirrored lineages (scores `s` on the
maximised one, `1 - s` on the minimised one): the loop, the API, the
dashboard, the prompts, the CLI and the halt report must show the same
positive gains, the same best trial and the same order for both.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from app.cli.main import app as cli
from app.config import Settings
from app.domain.digest import build_messages
from app.domain.spec import parse_spec
from app.domain.states import Decision, Direction, Label, TrialStatus
from app.services.import_recipe import create_search
from app.services.propose import load_job
from app.store import rollup
from app.store.models import Search, Trial, TrialRollup
from app.store.report import halt_report
from app.store.tick import kept_candidates
from testing.factories import Recipe, add_trial, baseline_of, finish, give_commit, spec_dict

# Maximised scores; the minimised search records 1 - score, so every gain is the same.
BASELINE, BEST, WORSE_CHILD = 0.50, 0.70, 0.60
GAIN, CHILD_GAIN = 0.20, -0.10


@dataclass(frozen=True)
class Lineage:
    search: Search
    baseline: Trial
    best: Trial  # beat the baseline by GAIN: kept
    worse: Trial  # its child, worse by 0.1: discarded


def scored(direction: Direction, score: float) -> float:
    return score if direction is Direction.MAXIMIZE else 1.0 - score


def record(session: Session, settings: Settings, recipe: Recipe, direction: Direction) -> Lineage:
    raw = spec_dict(recipe)
    raw["evaluator"].update(direction=direction.value, gates=[])
    search = create_search(session, parse_spec(raw), settings=settings, actor="test").search
    baseline = finish(session, baseline_of(session, search), Label.OK, scored(direction, BASELINE))
    best = add_trial(session, search, agent="opt", parent=baseline, score=scored(direction, BEST))
    give_commit(session, search, best)
    worse = add_trial(session, search, agent="arch", parent=best,
                      score=scored(direction, WORSE_CHILD))  # fmt: skip
    add_trial(session, search, agent="opt", parent=best, label=Label.CRASH)
    session.commit()
    return Lineage(search, baseline, best, worse)


@pytest.fixture(params=list(Direction), ids=lambda d: d.value)
def lineage(
    request: pytest.FixtureRequest, session: Session, settings: Settings, recipe: Recipe
) -> Lineage:
    return record(session, settings, recipe, request.param)


def test_the_loop_keeps_the_better_trial_and_stores_gains_with_the_same_sign(
    session: Session, lineage: Lineage
) -> None:
    best, worse = session.get(Trial, lineage.best.id), session.get(Trial, lineage.worse.id)
    assert best is not None and worse is not None
    search = session.get(Search, lineage.search.id)
    assert search is not None

    assert best.delta == pytest.approx(GAIN) and best.decision is Decision.KEEP
    assert worse.delta == pytest.approx(CHILD_GAIN) and worse.decision is Decision.DISCARD
    assert search.best_trial_id == best.id
    candidates = kept_candidates(session, search)
    assert [c.trial_id for c in candidates] == [best.id, lineage.baseline.id]


def test_the_api_serves_the_same_deltas_improvement_and_best_first_order(
    client: TestClient, lineage: Lineage
) -> None:
    search_id = lineage.search.id

    assert client.get(f"/api/trials/{lineage.best.id}").json()["delta"] == pytest.approx(GAIN)
    assert client.get(f"/api/trials/{lineage.worse.id}").json()["delta"] == pytest.approx(
        CHILD_GAIN
    )
    report = client.get(f"/api/searches/{search_id}/report").json()
    assert report["improvement"] == pytest.approx(GAIN)
    assert report["best_trial_id"] == lineage.best.id
    best_first = client.get(f"/api/searches/{search_id}/trials", params={"sort": "best"}).json()
    assert [t["number"] for t in best_first["items"]] == [1, 2, 0, 3]  # unscored last
    worst_first = client.get(f"/api/searches/{search_id}/trials", params={"sort": "worst"}).json()
    assert [t["number"] for t in worst_first["items"]] == [0, 2, 1, 3]


def test_the_dashboard_shows_the_same_gains_on_every_page(
    client: TestClient, session: Session, lineage: Lineage
) -> None:
    search_id = lineage.search.id

    search_page = client.get(f"/searches/{search_id}").text
    assert re.search(r'id="improvement">\+0\.2<', search_page)
    assert "+0.2 over parent" in client.get(f"/trials/{lineage.best.id}").text
    assert "-0.1 over parent" in client.get(f"/trials/{lineage.worse.id}").text
    listed = client.get("/", params={"format": "json"}).json()["rows"]
    assert [row["improvement"] for row in listed] == [pytest.approx(GAIN)]
    view = client.get(f"/searches/{search_id}", params={"format": "json"}).json()["view"]
    board = {row["agent"]: row for row in view["leaderboard"]}
    assert board["opt"]["best_delta"] == pytest.approx(GAIN) and board["opt"]["keeps"] == 1
    assert board["arch"]["keeps"] == 0
    bests = {b["agent"]: b["best"] for b in view["buckets"] if b["label"] == "ok"}
    direction = lineage.search.search_spec.evaluator.direction
    assert bests["opt"] == pytest.approx(scored(direction, BEST))


def test_the_stored_blocks_pick_the_best_by_direction(session: Session, lineage: Lineage) -> None:
    search = session.get(Search, lineage.search.id)
    assert search is not None
    for _ in range(rollup.BLOCK):  # a whole settled block, so the tick would store it
        add_trial(session, search, agent="arch", parent=lineage.best, label=Label.GATE_MISS)

    assert rollup.advance(session, search) == 1
    direction = search.search_spec.evaluator.direction
    stored = session.scalar(
        select(TrialRollup.best).where(
            TrialRollup.search_id == search.id,
            TrialRollup.label == Label.OK,
            TrialRollup.agent_id == lineage.best.agent_id,
        )
    )
    assert stored == pytest.approx(scored(direction, BEST))


def test_agents_are_told_the_same_gains(session: Session, lineage: Lineage) -> None:
    search = session.get(Search, lineage.search.id)
    best = session.get(Trial, lineage.best.id)
    assert search is not None and best is not None
    proposed = add_trial(session, search, agent="opt", parent=best, label=None,
                         status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()

    job = load_job(session, proposed.id)

    assert job is not None and job.digest.best is not None
    assert job.digest.best.delta == pytest.approx(GAIN)
    prompt = "\n".join(m["content"] for m in build_messages(job.digest))
    assert "improvement over parent +0.2" in prompt
    assert "improvement over parent -0.1" in prompt
    standing = {s.agent: s for s in job.digest.leaderboard}
    assert (standing["opt"].keeps, standing["arch"].keeps) == (1, 0)


def test_the_cli_and_the_halt_report_show_the_same_improvement(
    session: Session, lineage: Lineage, database_url: str, tmp_path: Path
) -> None:
    report = halt_report(session, lineage.search.id)
    assert report.improvement == pytest.approx(GAIN) and report.keeps == 1

    env = {"TRIALFORGE_DATABASE_URL": database_url, "TRIALFORGE_DATA_DIR": str(tmp_path)}
    shown = CliRunner().invoke(cli, ["search", "report", str(lineage.search.id)], env=env)
    assert shown.exit_code == 0, shown.stderr
    assert re.search(r"improvement\s+\+0\.2\n", shown.stdout)
    compared = CliRunner().invoke(cli, ["compare", str(lineage.search.id)], env=env)
    assert compared.exit_code == 0, compared.stderr
    assert " +0.2 " in compared.stdout
