"""Every label has a colour, taken from the `Label` enum itself (issue 13).

Invariant: the charts, the legend and the badges colour every label, so a
new label can never leave a blank gap in the failure strip (as
`no_submission` and `preflight_crash` once did) or an unstyled badge.
"""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session

from app.config import Settings
from app.dashboard.charts import Bucket, Node, failure_strips, lineage_graph
from app.dashboard.palette import AGENT_COLOURS, LABEL_COLOURS, agent_colours
from app.domain.states import Label
from testing.factories import Recipe, add_trial, seeded_search

HEX = re.compile(r"^#[0-9a-f]{6}$")


def test_every_label_has_its_own_colour() -> None:
    assert set(LABEL_COLOURS) == set(Label)
    assert all(HEX.match(colour) for colour in LABEL_COLOURS.values())
    assert len(set(LABEL_COLOURS.values())) == len(Label)


def test_the_failure_strip_fills_a_cell_for_every_label() -> None:
    buckets = [Bucket(n, n, "opt", label.value, 1, None) for n, label in enumerate(Label)]

    svg = failure_strips(buckets, agents=["opt"], last_number=len(Label) - 1)

    for label in Label:
        assert f'fill="{LABEL_COLOURS[label]}"' in svg, label
        assert f"1 {label.value}</title>" in svg, label


def test_every_page_styles_a_badge_for_every_label(
    client: TestClient, session: Session, settings: Settings, recipe: Recipe
) -> None:
    search = seeded_search(session, settings, recipe, "maximize")
    for label in (Label.NO_SUBMISSION, Label.PREFLIGHT_CRASH):
        add_trial(session, search, agent="opt", parent=None, label=label)
    session.commit()

    page = client.get(f"/searches/{search.id}").text

    for label in Label:
        assert re.search(rf"\.label-{label.value} \{{ background: #[0-9a-f]{{6}}; \}}", page)
    legend = page[page.index("Outcomes per agent over time") :]
    for label in (Label.NO_SUBMISSION, Label.PREFLIGHT_CRASH):
        assert f'fill="{LABEL_COLOURS[label]}"' in legend


def test_no_agent_is_coloured_like_an_outcome() -> None:
    """Issue 18: a knobs agent drawn purple read as illegal_edit."""
    agents = agent_colours([f"agent{n}" for n in range(len(AGENT_COLOURS))])

    assert not set(agents.values()) & set(LABEL_COLOURS.values())
    assert len(set(agents.values())) == len(agents)


def test_the_lineage_graph_numbers_its_nodes_and_says_each_hypothesis_on_hover() -> None:
    wider = "Wider hidden layer, 128 units."
    nodes = [Node(1, 0, None, "baseline", "ok", 0.5, "the recipe", "baseline"),
             Node(2, 1, 1, "architecture", "ok", 0.6, wider, "keep")]  # fmt: skip

    svg = lineage_graph(nodes, [1, 2], agent_colours(["architecture"]))

    assert '<text class="num"' in svg and ">1</text>" in svg
    assert f"{wider}</title>" in svg
    assert f'fill="{agent_colours(["architecture"])["architecture"]}"' in svg
