"""Turns what an agent wrote into one unified diff, or says precisely why it cannot.

Models are unreliable diff writers (line counts, context drift), so agents
may send SEARCH/REPLACE edits (an exact snippet and its replacement, several
per file, several files) as well as raw unified diffs; both become one diff
here, against the parent's files. Pure: file contents come in through a
reader, nothing touches git. A `MalformedEdit` carries a reason written for
the model, which is retried with it.

The reply format an LLM agent is asked for (see `REPLY_FORMAT`):

    {"hypothesis": "...", "expected_delta": 0.01,
     "edits": [{"path": "train.py", "search": "LR = 0.1", "replace": "LR = 0.05"},
               {"diff": "--- a/model.py\\n+++ b/model.py\\n@@ ..."}]}
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

HYPOTHESIS_MAX_CHARS = 2_000  # a trial's hypothesis as a model writes it (it is shown on pages)
HYPOTHESIS_MIN_WORDS = 3  # fewer cannot name a mechanism and its expected effect
# Texts that pass for a hypothesis by length but say nothing of a mechanism or an effect.
PLACEHOLDERS = frozenset(
    {"test", "todo", "tbd", "hypothesis", "n/a", "none", "idea", "edit", "change", "fix",
     "update", "try something", "improve the metric", "make it better", "this is a test"}
)  # fmt: skip
_WORD = re.compile(r"[^\W\d_]+")
EDIT_MAX_CHARS = 500_000  # one proposal's whole diff
NOTES_MAX_CHARS = 4_000  # what an agent adds beside its hypothesis
REPLY_FORMAT = (
    'Reply with one JSON object and nothing else: {"hypothesis": "<one or two sentences: '
    'what you change and why it should improve the metric>", "expected_delta": <number>, '
    '"notes": "<optional: caveats, what to try next>", '
    '"edits": [{"path": "<file>", "search": "<exact text, copied from the file, that occurs '
    'once>", "replace": "<new text>"}, ...]}. An edit with an empty "search" creates a new '
    'file. Instead of search/replace you may give {"diff": "<unified diff>"}. The '
    f"hypothesis is at most {HYPOTHESIS_MAX_CHARS} characters, the notes {NOTES_MAX_CHARS}, "
    f"the whole edit {EDIT_MAX_CHARS}. Edited Python files must compile."
)
NO_NEWLINE = "\\ No newline at end of file\n"
_FENCE = re.compile(r"```(?:json)?\s*\n(.*?)\n```", re.DOTALL)


class MalformedEdit(ValueError):
    """The reply or its edits cannot become a diff; the message tells the model why."""


@dataclass(frozen=True)
class Replace:
    path: str
    search: str
    replace: str


@dataclass(frozen=True)
class RawDiff:
    diff: str


Edit = Replace | RawDiff


@dataclass(frozen=True)
class Draft:
    hypothesis: str
    edits: tuple[Edit, ...]
    expected_delta: float | None = None
    notes: str | None = None


def parse_reply(text: str) -> Draft:
    """The draft in a model's reply: a JSON object, bare or in a ```json fence."""
    candidates = [match.group(1) for match in _FENCE.finditer(text)] + [text.strip()]
    start, end = text.find("{"), text.rfind("}")
    if 0 <= start < end:
        candidates.append(text[start : end + 1])
    for candidate in candidates:
        try:
            value = json.loads(candidate)
        except (ValueError, RecursionError):  # not JSON, or nested past the parser's depth
            continue
        if isinstance(value, dict):
            return _draft(value)
    raise MalformedEdit("the reply holds no JSON object. " + REPLY_FORMAT)


def _draft(value: dict[str, object]) -> Draft:
    hypothesis = value.get("hypothesis")
    if not isinstance(hypothesis, str):
        raise MalformedEdit('"hypothesis" must be a non-empty string')
    hypothesis = checked_hypothesis(hypothesis)
    raw_edits = value.get("edits")
    if not isinstance(raw_edits, list) or not raw_edits:
        raise MalformedEdit('"edits" must be a non-empty list')
    edits: list[Edit] = []
    for index, raw in enumerate(raw_edits):
        if not isinstance(raw, dict):
            raise MalformedEdit(f"edits[{index}] must be an object")
        if isinstance(raw.get("diff"), str):
            edits.append(RawDiff(raw["diff"]))
            continue
        path, search, replace = raw.get("path"), raw.get("search"), raw.get("replace")
        if not (isinstance(path, str) and isinstance(search, str) and isinstance(replace, str)):
            raise MalformedEdit(
                f'edits[{index}] needs string "path", "search" and "replace" (or a "diff")'
            )
        edits.append(Replace(path.strip(), search, replace))
    notes = value.get("notes")
    return Draft(
        hypothesis,
        tuple(edits),
        finite_delta(value.get("expected_delta")),
        checked_notes(notes if isinstance(notes, str) else None),
    )


def checked_hypothesis(text: str) -> str:
    """A model's hypothesis, stripped; `MalformedEdit` when past the cap, empty, a
    placeholder or trivially short. It is what every later agent reads of the trial in the
    lineage: "test" kept as the best would teach them nothing."""
    hypothesis = text.strip()
    if len(hypothesis) > HYPOTHESIS_MAX_CHARS:
        raise MalformedEdit(
            f"the hypothesis is {len(hypothesis)} characters; at most {HYPOTHESIS_MAX_CHARS}"
        )
    words = _WORD.findall(hypothesis)
    if len(words) < HYPOTHESIS_MIN_WORDS or hypothesis.lower().strip(" .!?") in PLACEHOLDERS:
        raise MalformedEdit(
            f"the hypothesis {hypothesis[:80]!r} says nothing: name the mechanism you change "
            f"and the effect you expect on the metric (at least {HYPOTHESIS_MIN_WORDS} words)"
        )
    return hypothesis


def checked_notes(text: str | None) -> str | None:
    """An agent's notes, stripped (None when empty); `MalformedEdit` when past the cap."""
    notes = (text or "").strip()
    if len(notes) > NOTES_MAX_CHARS:
        raise MalformedEdit(f"the notes are {len(notes)} characters; at most {NOTES_MAX_CHARS}")
    return notes or None


def compile_problems(files: Mapping[str, str]) -> list[str]:
    """What stops the edited files from running at all: Python that does not compile.

    The one check before a proposal may take a sandbox run: a session's
    `check` and `submit`, and every single-shot reply, ask it.
    """
    problems = []
    for path, content in sorted(files.items()):
        if path.endswith(".py"):
            try:
                compile(content, path, "exec", dont_inherit=True)
            except (SyntaxError, ValueError) as error:  # ValueError: a NUL byte in the source
                line = getattr(error, "lineno", None)
                message = getattr(error, "msg", None) or str(error)
                problems.append(f"{path}:{line or '?'}: {message}")
    return problems


def finite_delta(value: object) -> float | None:
    """A model's expected gain, when it is a finite number; anything else is no estimate."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def checked_edit(diff: str) -> str:
    """`diff`, or `MalformedEdit` when it is past the cap on one proposal's edit."""
    if len(diff) > EDIT_MAX_CHARS:
        raise MalformedEdit(f"the edit is {len(diff)} characters; at most {EDIT_MAX_CHARS}")
    return diff


def render_diff(edits: Sequence[Edit], read: Callable[[str], str | None]) -> str:
    """One unified diff for all `edits`; `read(path)` gives the parent's file or None.

    Search/replace edits to one file apply in order, each to the result of the
    previous one; raw diffs are passed through for git to apply. Files that
    would not compile are refused here, not after a sandbox run.
    """
    after: dict[str, str] = {}
    before: dict[str, str | None] = {}
    raw: list[str] = []
    for index, edit in enumerate(edits):
        if isinstance(edit, RawDiff):
            raw.append(edit.diff if edit.diff.endswith("\n") else edit.diff + "\n")
            continue
        if edit.path not in before:
            before[edit.path] = read(edit.path)
        current = after.get(edit.path, before[edit.path])
        try:
            after[edit.path] = replace_once(edit.path, current, edit.search, edit.replace)
        except MalformedEdit as error:
            raise MalformedEdit(f"edits[{index}]: {error}") from error
    parts = [
        file_diff(path, before[path], content)
        for path, content in after.items()
        if content != before[path]
    ]
    diff = "".join(parts + raw)
    if not diff.strip():
        raise MalformedEdit("the edits change nothing: every replacement equals its search text")
    problems = compile_problems(after)
    if problems:
        raise MalformedEdit("the edited files do not compile: " + "; ".join(problems))
    return checked_edit(diff)


def replace_once(path: str, current: str | None, search: str, replace: str) -> str:
    """`current` with the one occurrence of `search` replaced; the one exact-once rule.

    Every edit path uses it: single-shot replies (`render_diff`) and a
    session's `edit_file`. `current` None means the file does not exist, and
    an empty `search` creates it. A model's CRLF against a file with LF
    endings is matched as LF and the file keeps its endings.
    """
    if current is None:
        if search:
            raise MalformedEdit(f'{path!r} does not exist; use an empty "search" to create it')
        return replace
    if not search:
        raise MalformedEdit(f'{path!r} exists; "search" must not be empty: copy a snippet of it')
    if "\r" not in current:
        search, replace = search.replace("\r\n", "\n"), replace.replace("\r\n", "\n")
    found = current.count(search)
    if found != 1:
        where = "does not occur" if found == 0 else f"occurs {found} times"
        raise MalformedEdit(
            f"the search text {where} in {path!r}; copy an exact, unique snippet from the file"
        )
    return current.replace(search, replace, 1)


def file_diff(path: str, old: str | None, new: str) -> str:
    lines = difflib.unified_diff(
        (old or "").splitlines(keepends=True),
        new.splitlines(keepends=True),
        "/dev/null" if old is None else f"a/{path}",
        f"b/{path}",
    )
    header = f"diff --git a/{path} b/{path}\n" + ("new file mode 100644\n" if old is None else "")
    body = "".join(line if line.endswith("\n") else line + "\n" + NO_NEWLINE for line in lines)
    return header + body
