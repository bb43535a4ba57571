"""Every trial's params, whoever edited its recipe, and the page that charts them (issue 18).

Invariants: a trial's params are the declared knobs' values as its committed
recipe holds them (a knob its file no longer matches once is left out, a
choice stays text), for the baseline from the start and for every proposal,
the control arm's or not; the API, the trial page and the trials table show
them; the params page draws a line per scored trial across the knobs and the
score, and a dot per trial against each knob, each leading to its trial.
"""

from __future__ import annotations

import random
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.importance import MIN_TRIALS, importances
from app.domain.knobs import knob_values
from app.domain.proposals import Proposal
from app.domain.roster import Knob, KnobKind
from app.domain.states import Direction, Label, TrialStatus
from app.gitstore import GitStore
from app.services.propose import record_proposal
from testing.factories import LOWER_LR, Recipe, add_trial, baseline_of, finish, seeded_search

LR = Knob(name="lr", file="train.py", pattern=r"^LR = (\S+)$", kind=KnobKind.FLOAT,
          low=0.001, high=1.0)  # fmt: skip
OPT = Knob(name="opt", file="train.py", pattern=r"^OPT = (\w+)$", kind=KnobKind.CHOICE,
           choices=["sgd", "adam"])  # fmt: skip
GONE = Knob(name="width", file="model.py", pattern=r"^WIDTH = (\d+)$", kind=KnobKind.INT,
            low=1, high=512)  # fmt: skip


def test_a_recipes_params_are_its_knobs_values_as_it_holds_them() -> None:
    files = {"train.py": "LR = 0.05\nOPT = adam\nEPOCHS = 3\n"}

    assert knob_values([LR, OPT, GONE], files.get) == {"lr": 0.05, "opt": "adam"}


def test_the_baseline_and_every_proposal_carry_their_params_to_the_api_and_the_pages(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = baseline_of(session, search)
    assert baseline.params == {"lr": 0.1}
    proposed = add_trial(session, search, agent="opt", parent=baseline, label=None,
                         status=TrialStatus.PROPOSED)  # fmt: skip
    session.commit()

    record_proposal(session, proposed.id, Proposal("Halve the learning rate for stability.",
                                                   LOWER_LR))  # fmt: skip
    session.commit()
    proposed.status = TrialStatus.READY
    finish(session, proposed, Label.OK, 0.9)
    session.commit()

    assert proposed.params == {"lr": 0.05}  # an LLM agent's edit moved the knob too
    assert client.get(f"/api/trials/{proposed.id}").json()["params"] == {"lr": 0.05}
    assert '<dd id="params">lr = 0.05</dd>' in client.get(f"/trials/{proposed.id}").text
    table = client.get(f"/searches/{search.id}/trials").text
    assert "<th>lr</th>" in table and "<td>0.05</td>" in table
    page = client.get(f"/searches/{search.id}/params").text
    assert page.count('<polyline class="param-line"') == 2  # the baseline and this trial
    assert f'<a href="/trials/{proposed.id}"><circle class="point"' in page
    assert 'id="params-link"' in client.get(f"/searches/{search.id}").text


def test_a_search_without_knobs_says_it_has_no_params(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe, tmp_path: Path
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    spec = dict(search.spec)
    spec["agents"] = [a for a in spec["agents"] if a["kind"] != "control"]
    search.spec = spec
    session.commit()

    assert "declares no knobs" in client.get(f"/searches/{search.id}/params").text
    assert GitStore(Path(search.repo_path)).reader(search.base_commit)("nope.py") is None


def test_importance_names_the_knob_that_set_the_score_whichever_way_it_is_read() -> None:
    rng = random.Random(7)
    rows = []
    for _ in range(200):
        lr, width, opt = rng.uniform(0.001, 0.1), rng.randint(1, 8), rng.choice(["sgd", "adam"])
        rows.append(({"lr": lr, "width": width, "opt": opt, "fixed": 3}, (lr - 0.05) ** 2))
    flipped = [(params, -score) for params, score in rows]
    names = ["lr", "width", "opt", "fixed"]

    for found in (importances(rows, names, Direction.MINIMIZE),
                  importances(flipped, names, Direction.MAXIMIZE)):  # fmt: skip
        assert found is not None
        assert found[0].name == "lr" and found[0].share > 0.8, found
        assert "fixed" not in {item.name for item in found}  # it never varied
        assert abs(sum(item.share for item in found) - 1) < 1e-6
    by_choice = [(params, float(params["opt"] == "adam")) for params, _ in rows]
    assert importances(by_choice, names, Direction.MAXIMIZE)[0].name == "opt"  # type: ignore[index]
    assert importances(rows[: MIN_TRIALS - 1], names, Direction.MINIMIZE) is None


def test_the_params_page_ranks_the_knobs_and_charts_any_reported_metric(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    baseline = baseline_of(session, search)
    rng = random.Random(3)
    for _ in range(MIN_TRIALS + 5):
        lr = round(rng.uniform(0.001, 0.2), 4)
        trial = add_trial(session, search, agent="knobs", parent=baseline,
                          score=1 - abs(lr - 0.05))  # fmt: skip
        trial.params = {"lr": lr}
        trial.metrics = {**trial.metrics, "steps_per_s": 100 + trial.number, "note": "text"}
    session.commit()

    page = client.get(f"/searches/{search.id}/params")
    assert page.status_code == 200
    assert 'id="importances"' in page.text and "<td>lr</td><td>100.0%</td>" in page.text
    assert page.text.count('<circle class="point" cx=') >= MIN_TRIALS  # val_acc over trials
    assert '<option value="val_acc" selected>' in page.text  # the search's own metric first
    assert '<option value="note"' not in page.text  # text is not a metric to chart

    steps = client.get(f"/searches/{search.id}/params", params={"metric": "steps_per_s"})
    assert "steps_per_s over trials" in steps.text
    assert steps.text.count(": steps_per_s ") == MIN_TRIALS + 5
    data = client.get(f"/searches/{search.id}/params?format=json").json()
    assert data["importances"][0]["name"] == "lr"
    missing = client.get(f"/searches/{search.id}/params", params={"metric": "nope"})
    assert missing.status_code == 422 and "steps_per_s" in missing.text
