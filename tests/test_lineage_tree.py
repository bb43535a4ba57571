"""The lineage graph as a tree (issue 18 #4): tournament selection made the lane graph spaghetti.

Invariant: a trial is drawn one row below its parent, a parent between its
children, each family in columns of its own (so no edge crosses another
family), and a run of discarded leaves under one parent folds into one mark
that says what it holds, while a keep, a trial on the best path or a trial
with children of its own is never folded.
"""

from __future__ import annotations

import random
import re

from app.dashboard.charts import Node, lineage_graph
from app.dashboard.palette import agent_colours
from app.dashboard.tree import FOLD_RUN, layout


def node(trial_id: int, parent: int | None, decision: str = "discard",
         label: str = "ok") -> Node:  # fmt: skip
    return Node(trial_id, trial_id, parent, "opt", label, 0.5, f"idea {trial_id}", decision)


def tournament(seed: int, size: int = 300) -> list[Node]:
    """A lineage as tournament selection grows one: most children of a few keeps, discarded."""
    rng = random.Random(seed)
    nodes, keeps = [node(0, None, "baseline")], [0]
    for number in range(1, size):
        parent = rng.choice(keeps[-4:])
        kept = rng.random() < 0.08
        nodes.append(node(number, parent, "keep" if kept else "discard",
                          rng.choice(["ok", "crash", "oom"])))  # fmt: skip
        if kept:
            keeps.append(number)
    return nodes


def subtree(nodes: list[Node], root: int) -> set[int]:
    below = {root}
    for item in sorted(nodes, key=lambda n: n.number):
        if item.parent_id in below:
            below.add(item.trial_id)
    return below


def test_each_trial_sits_a_row_below_its_parent_and_families_keep_to_their_own_columns() -> None:
    for seed in range(5):
        nodes = tournament(seed)
        placed = layout(nodes)
        by_id = {n.trial_id: n for n in nodes}
        for item in nodes:
            if item.trial_id in placed.depth and item.parent_id is not None:
                assert placed.depth[item.trial_id] == placed.depth[item.parent_id] + 1
        spans = {}
        for item in nodes:
            if item.trial_id not in placed.column:
                continue
            inside = [placed.column[t] for t in subtree(nodes, item.trial_id) if t in placed.column]
            inside += [c for fold, c, _ in placed.folds if fold.parent_id in
                       subtree(nodes, item.trial_id)]  # fmt: skip
            spans[item.trial_id] = (min(inside), max(inside))
            assert (
                spans[item.trial_id][0] <= placed.column[item.trial_id] <= spans[item.trial_id][1]
            )
        for item in nodes:  # siblings' subtrees never overlap: no edge crosses another family
            siblings = [n.trial_id for n in nodes if n.parent_id == item.parent_id
                        and n.trial_id in spans and n.trial_id != item.trial_id]  # fmt: skip
            if item.trial_id not in spans:
                continue
            low, high = spans[item.trial_id]
            for other in siblings:
                other_low, other_high = spans[other]
                assert high < other_low or other_high < low, (seed, item.trial_id, other)
        assert placed.columns < len(nodes) / 3  # the folds, not one column per trial
        assert by_id


def test_a_run_of_discards_folds_into_one_mark_but_keeps_and_parents_stay() -> None:
    nodes = [node(0, None, "baseline")]
    nodes += [node(n, 0, label="crash" if n % 2 else "ok") for n in range(1, 8)]  # 7 discards
    nodes += [node(8, 0, "keep"), node(9, 0), node(10, 0)]  # a keep, then a run of two
    nodes += [node(11, 0), node(12, 11)]  # a discard with a child of its own
    nodes += [node(13, 0), node(14, 0), node(15, 0)]  # three more, one on the best path
    placed = layout(nodes, best_path=[0, 14])

    assert [fold.numbers for fold, _, _ in placed.folds] == [(1, 2, 3, 4, 5, 6, 7)]
    fold = placed.folds[0][0]
    assert fold.labels == {"crash": 4, "ok": 3} and fold.parent_id == 0
    drawn = set(placed.column)
    assert {8, 9, 10, 11, 12, 13, 14, 15} <= drawn and not drawn & set(range(1, 8))
    assert FOLD_RUN == 3  # runs of two (9-10; 13 and 15 around the best path's 14) stay


def test_the_graph_links_a_fold_to_its_parent_and_stays_legible_when_wide() -> None:
    nodes = tournament(1, size=600)
    svg = lineage_graph(nodes, [0], agent_colours(["opt"]))

    folds = re.findall(r'<a href="/trials/(\d+)#children" class="fold" data-parent="\d+" '
                       r'data-count="(\d+)">', svg)  # fmt: skip
    assert folds and all(int(count) >= FOLD_RUN for _, count in folds)
    drawn = len(re.findall(r'class="node"', svg)) + sum(int(count) for _, count in folds)
    assert drawn == len(nodes)  # every trial is either a dot or counted in a fold
    width = int(re.search(r'viewBox="0 0 (\d+) ', svg).group(1))
    if width > 900:  # wider than the page: drawn at its own size, the section scrolls
        assert f'style="min-width:{width}px"' in svg


def test_a_trial_whose_ancestors_are_not_drawn_says_so() -> None:
    svg = lineage_graph([node(40, 39, "keep"), node(41, 40)], [40], agent_colours(["opt"]))

    assert "earlier ancestors not drawn" in svg
