"""The idea of an edit, apart from the parent it was made on: a fingerprint of its changed lines.

Exact-recipe dedup (the git tree) misses what the paper saw most: the same
idea proposed again, in waves, by other agents on other parents. Two edits
share an idea when they remove and add the same lines in the same files,
whatever their context, hunk order or whitespace.

Whether an idea may run again is one rule (`repeat_refusal`) that the
session's submit, the single-shot reply loop and the proposal service all
ask, so an agent hears "already tried as trial N" before a slot is spent.
Pure: it reads a unified diff and what the store says of the earlier try.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from app.domain.spec import RepeatIdeas

_SPACE = re.compile(r"\s+")
_HUNK = re.compile(r"@@ -\d+(?:,(?P<old>\d+))? \+\d+(?:,(?P<new>\d+))? @@")


def idea_fingerprint(diff: str) -> str | None:
    """A stable hash of the lines a diff changes, per file; None for an edit that changes none.

    Each changed line is whitespace-normalised and kept with its file and its
    side (removed or added); the multiset is sorted, so reordered hunks or
    files, other context lines and re-indentation give the same fingerprint.
    A line removed and added back unchanged cancels out: an edit of
    whitespace or of order alone has no idea to compare (None).
    """
    net: Counter[tuple[str, str]] = Counter()
    path, old_left, new_left = "", 0, 0
    for line in diff.splitlines():
        if old_left <= 0 and new_left <= 0:  # between hunks: headers
            hunk = _HUNK.match(line)
            if hunk:
                old_left, new_left = int(hunk["old"] or 1), int(hunk["new"] or 1)
            elif line.startswith("--- ") or line.startswith("+++ "):
                named = line[4:].strip()
                if named != "/dev/null":  # a new or deleted file is named on its other side
                    path = named[2:] if named[:2] in ("a/", "b/") else named
            continue
        side = line[:1]
        if side == "\\":
            continue  # "\ No newline at end of file"
        old_left -= side in ("-", " ", "")
        new_left -= side in ("+", " ", "")
        text = _SPACE.sub(" ", line[1:]).strip()
        if side in ("+", "-") and text:
            net[(path, text)] += 1 if side == "+" else -1
    changed = [f"{path}\0{count:+d}\0{text}" for (path, text), count in net.items() if count]
    if not changed:
        return None
    return hashlib.sha256("\n".join(sorted(changed)).encode()).hexdigest()


@dataclass(frozen=True)
class TriedIdea:
    """The earliest trial that tried an idea, and whether any trial of it was kept."""

    number: int
    parent_number: int | None
    outcome: str  # in the lineage's words: "crash", "ok (discarded)", "pending"
    kept: bool = False

    def describe(self) -> str:
        return f"trial {self.number} (on trial {self.parent_number}: {self.outcome})"


IdeaLookup = Callable[[str], TriedIdea | None]


def nothing_tried(fingerprint: str) -> TriedIdea | None:
    return None


def repeat_refusal(tried: TriedIdea | None, parent_number: int, mode: RepeatIdeas) -> str | None:
    """Why an idea already tried may not run on `parent_number`; None when it may.

    On the same parent it never may: it would measure the same thing again.
    Elsewhere `allow` lets it; `refuse` lets only a kept idea, since bringing
    a keep onto another line (what a combiner does) is a combination, not a
    repeat.
    """
    if tried is None:
        return None
    if tried.parent_number != parent_number and (mode is RepeatIdeas.ALLOW or tried.kept):
        return None
    return f"this idea (the same changed lines) was already tried as {tried.describe()}"
