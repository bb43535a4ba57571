"""Where the lineage graph puts each trial: a tree, parent above child, runs of discards folded.

Drawn by order and agent lane, tournament selection made the graph spaghetti:
a parent's children landed far apart and every edge crossed the others. A tree
(each trial one row below its parent, children side by side under it, a
parent centred over them) keeps a family together, and folding a run of
discarded leaves into one mark keeps a parent that was tried fifty times from
taking fifty columns. Pure: nodes in, places out.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from app.domain.states import Decision

FOLD_RUN = 3  # this many discarded leaves in a row under one parent fold into one mark


class TreeNode(Protocol):
    @property
    def trial_id(self) -> int: ...
    @property
    def number(self) -> int: ...
    @property
    def parent_id(self) -> int | None: ...
    @property
    def decision(self) -> str | None: ...
    @property
    def label(self) -> str | None: ...


@dataclass(frozen=True)
class Fold:
    """A run of discarded leaves under one parent, drawn as one mark."""

    parent_id: int
    numbers: tuple[int, ...]  # the folded trials' numbers, in order
    labels: dict[str, int]  # how many of them ended with each label


@dataclass(frozen=True)
class Layout:
    column: dict[int, float]  # trial id -> x, in columns (a parent sits between its children)
    depth: dict[int, int]  # trial id -> row (0 for a trial drawn without its parent)
    folds: list[tuple[Fold, float, int]] = field(default_factory=list)  # (fold, column, row)
    columns: int = 0  # how many leaf columns the tree takes
    rows: int = 0


def layout(nodes: Sequence[TreeNode], best_path: Sequence[int] = ()) -> Layout:
    """Each node's column and row, and the folded runs; roots (whose parent is not drawn)
    side by side in trial order."""
    by_id = {node.trial_id: node for node in nodes}
    children: dict[int, list[TreeNode]] = {}
    roots = []
    for node in sorted(nodes, key=lambda n: n.number):
        if node.parent_id is not None and node.parent_id in by_id:
            children.setdefault(node.parent_id, []).append(node)
        else:
            roots.append(node)
    keep = set(best_path)
    column: dict[int, float] = {}
    depth: dict[int, int] = {}
    folds: list[tuple[Fold, float, int]] = []
    next_leaf = 0.0

    def place(node: TreeNode, row: int) -> float:
        """Lay out `node`'s subtree from the next free column; its own column."""
        nonlocal next_leaf
        depth[node.trial_id] = row
        own = children.get(node.trial_id, [])
        if not own:
            column[node.trial_id] = next_leaf
            next_leaf += 1
            return column[node.trial_id]
        spots = []
        for item in _runs(own, children, keep):
            if isinstance(item, Fold):
                folds.append((item, next_leaf, row + 1))
                spots.append(next_leaf)
                next_leaf += 1
            else:
                spots.append(place(item, row + 1))
        column[node.trial_id] = (spots[0] + spots[-1]) / 2
        return column[node.trial_id]

    # Iterative depth would be safer for very deep trees, but the drawn set is bounded
    # (the latest trials plus a capped best path), so the recursion is too.
    for root in roots:
        place(root, 0)
    rows = max([*depth.values(), *(row for _, _, row in folds)], default=-1) + 1
    return Layout(column, depth, folds, int(next_leaf), rows)


def _runs(
    siblings: list[TreeNode], children: dict[int, list[TreeNode]], keep: set[int]
) -> list[TreeNode | Fold]:
    """Siblings in order, each run of at least FOLD_RUN foldable leaves replaced by a Fold."""
    out: list[TreeNode | Fold] = []
    run: list[TreeNode] = []

    def close() -> None:
        if len(run) >= FOLD_RUN:
            labels: dict[str, int] = {}
            for node in run:
                name = node.label or "pending"
                labels[name] = labels.get(name, 0) + 1
            parent = run[0].parent_id
            assert parent is not None
            out.append(Fold(parent, tuple(node.number for node in run), labels))
        else:
            out.extend(run)
        run.clear()

    for node in siblings:
        foldable = (
            node.decision == Decision.DISCARD
            and node.trial_id not in children
            and node.trial_id not in keep
        )
        if foldable:
            run.append(node)
        else:
            close()
            out.append(node)
    close()
    return out
