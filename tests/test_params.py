"""Every trial's params, whoever edited its recipe, and the page that charts them (issue 18).

Invariants: a trial's params are the declared knobs' values as its committed
recipe holds them (a knob its file no longer matches once is left out, a
choice stays text), for the baseline from the start and for every proposal,
the control arm's or not; the API, the trial page and the trials table show
them; the params page draws a line per scored trial across the knobs and the
score, and a dot per trial against each knob, each leading to its trial.
"""

from __future__ import annotations

from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.domain.knobs import knob_values
from app.domain.proposals import Proposal
from app.domain.roster import Knob, KnobKind
from app.domain.states import Label, TrialStatus
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
