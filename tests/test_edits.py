"""What an agent writes becomes one diff git applies, or a reason the model can act on.

Invariant: search/replace edits (several per file, several files, new files)
and raw diffs all become one unified diff that `git apply` accepts on the
parent; anything ambiguous is refused with a precise reason, never guessed.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.domain.edits import MalformedEdit, RawDiff, Replace, parse_reply, render_diff
from app.gitstore import GitStore
from testing.factories import make_recipe

FILES = {"train.py": "LR = 0.1\nEPOCHS = 3\n", "model.py": "WIDTH = 64"}


def read(path: str) -> str | None:
    return FILES.get(path)


def test_a_reply_is_found_bare_in_a_fence_or_amid_prose() -> None:
    body = {
        "hypothesis": "lower the learning rate",
        "edits": [{"path": "a", "search": "x", "replace": "y"}],
    }
    bare = json.dumps(body)
    fenced = f"Here you go:\n```json\n{bare}\n```\nGood luck."
    prose = f"I propose {bare} as discussed."

    drafts = [parse_reply(text) for text in (bare, fenced, prose)]

    assert {d.hypothesis for d in drafts} == {"lower the learning rate"}
    assert all(d.edits == (Replace("a", "x", "y"),) for d in drafts)


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        ("no json here", "holds no JSON object"),
        ('{"edits": [{"diff": "x"}]}', '"hypothesis" must be a non-empty string'),
        ('{"hypothesis": "halve the rate", "edits": []}', '"edits" must be a non-empty list'),
        (
            '{"hypothesis": "halve the rate", "edits": [{"path": "a"}]}',
            'needs string "path", "search"',
        ),
        ('{"hypothesis": "test", "edits": []}', "says nothing: name the mechanism"),
        ('{"hypothesis": "This is a test.", "edits": []}', "says nothing"),
        ('{"hypothesis": "lower lr", "edits": []}', "at least 3 words"),
    ],
)
def test_a_malformed_reply_is_refused_with_a_reason(reply: str, reason: str) -> None:
    with pytest.raises(MalformedEdit, match=reason):
        parse_reply(reply)


def test_edits_to_several_files_and_a_new_file_become_one_diff_git_applies(
    tmp_path: Path,
) -> None:
    recipe = make_recipe(tmp_path)
    store, base = GitStore.create(tmp_path / "store.git", str(recipe.repo), None)
    edits = [
        Replace("train.py", "LR = 0.1", "LR = 0.05"),
        Replace("train.py", "EPOCHS = 3", "EPOCHS = 6"),
        Replace("model.py", "WIDTH = 64", "WIDTH = 128"),
        Replace("schedule.py", "", "WARMUP = 100\n"),
    ]

    diff = render_diff(edits, lambda path: _show(store, base, path))
    commit = store.apply_diff(base, diff, message="m", ref="refs/trials/1", protected=[])

    assert "LR = 0.05" in store.show_file(commit, "train.py")
    assert "EPOCHS = 6" in store.show_file(commit, "train.py")
    assert store.show_file(commit, "model.py") == "WIDTH = 128\n"
    assert store.show_file(commit, "schedule.py") == "WARMUP = 100\n"


def test_a_file_without_a_final_newline_keeps_it_that_way(tmp_path: Path) -> None:
    diff = render_diff([Replace("model.py", "64", "128")], read)

    assert diff.endswith("+WIDTH = 128\n\\ No newline at end of file\n")


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (Replace("train.py", "LR = 9", "LR = 1"), "does not occur in 'train.py'"),
        (Replace("train.py", "=", "=="), "occurs 2 times"),
        (Replace("ghost.py", "x", "y"), "does not exist"),
        (Replace("train.py", "", "x"), '"search" must not be empty'),
        (Replace("train.py", "LR = 0.1", "LR = 0.1"), "change nothing"),
    ],
)
def test_an_ambiguous_or_empty_edit_is_refused(edit: Replace, reason: str) -> None:
    with pytest.raises(MalformedEdit, match=reason):
        render_diff([edit], read)


def test_a_raw_diff_passes_through_for_git_to_judge() -> None:
    raw = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b"

    assert render_diff([RawDiff(raw)], read) == raw + "\n"


def _show(store: GitStore, commit: str, path: str) -> str | None:
    return store.show_file(commit, path) if path in store.list_files(commit) else None


def test_windows_line_endings_in_an_edit_follow_the_file_they_edit() -> None:
    edit = Replace("train.py", "LR = 0.1\r\nEPOCHS = 3", "LR = 0.05\r\nEPOCHS = 4")

    diff = render_diff([edit], read)

    assert "\r" not in diff
    assert "+LR = 0.05\n+EPOCHS = 4\n" in diff
