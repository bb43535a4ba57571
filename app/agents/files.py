"""Read access to the parent recipe for agents, straight from the search's git store."""

from __future__ import annotations

from collections.abc import Callable

from app.errors import NotFound
from app.gitstore import GitStore


def parent_reader(store: GitStore, commit: str) -> Callable[[str], str | None]:
    """`read(path)`: the file at `commit`, or None when there is none."""

    def read(path: str) -> str | None:
        try:
            return store.show_file(commit, path)
        except NotFound:
            return None

    return read
