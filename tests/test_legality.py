"""An edit passes `check_paths` only if every path it reads or writes stays inside the recipe.

Each forbidden move (absolute or `..` paths, `.git/`, protected globs on
either side of a rename, symlinks, submodules, binaries, leaving the agent's
surface) is refused as `illegal_edit` with a reason naming the path and the
rule; a diff that does not parse or names no file is `patch_rejected`.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from app.domain.legality import FileChange, check_paths, glob_match, parse_diff
from app.domain.states import Label
from app.errors import EditRejected

MULTI_FILE = """\
diff --git a/train.py b/train.py
index 1111111..2222222 100644
--- a/train.py
+++ b/train.py
@@ -1,2 +1,2 @@
 import model
-lr = 0.1
+lr = 0.05
diff --git a/model/head.py b/model/head.py
new file mode 100644
index 0000000..3333333
--- /dev/null
+++ b/model/head.py
@@ -0,0 +1 @@
+HEAD = 1
diff --git a/notes.txt b/notes.txt
deleted file mode 100644
index 4444444..0000000
--- a/notes.txt
+++ /dev/null
@@ -1 +0,0 @@
-old
diff --git a/model/net.py b/model/network.py
similarity index 90%
rename from model/net.py
rename to model/network.py
index 5555555..6666666 100644
--- a/model/net.py
+++ b/model/network.py
@@ -1 +1 @@
-width = 1
+width = 2
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
"""


def _change(
    path: str,
    *,
    old_path: str | None = None,
    new_mode: str | None = None,
    is_delete: bool = False,
    is_new: bool = False,
) -> FileChange:
    return FileChange(path, old_path, new_mode, False, is_delete, is_new)


def _check(diff: str, protected: Sequence[str] = (), surface: Sequence[str] | None = None) -> None:
    check_paths(parse_diff(diff).changes, protected, surface)


def _new_file(path: str, mode: str = "100644") -> str:
    return (
        f"diff --git a/{path} b/{path}\nnew file mode {mode}\n"
        f"--- /dev/null\n+++ b/{path}\n@@ -0,0 +1 @@\n+x\n"
    )


def _edit(path: str) -> str:
    return f"--- a/{path}\n+++ b/{path}\n@@ -1 +1 @@\n-a\n+b\n"


def test_a_git_diff_that_edits_adds_deletes_renames_and_re_modes_files_is_read_exactly() -> None:
    parsed = parse_diff(MULTI_FILE)

    assert parsed.strip == 1
    assert parsed.changes == (
        _change("train.py", new_mode="100644"),
        _change("model/head.py", new_mode="100644", is_new=True),
        _change("notes.txt", is_delete=True),
        _change("model/network.py", old_path="model/net.py", new_mode="100644"),
        _change("run.sh", new_mode="100755"),
    )


def test_a_legitimate_multi_file_diff_inside_the_surface_passes() -> None:
    _check(MULTI_FILE, protected=["eval/**", "data"], surface=["train.py", "model/**", "*.*"])


def test_a_plain_diff_without_git_headers_is_read_with_its_prefixes_stripped() -> None:
    diff = _edit("train.py") + "--- /dev/null\n+++ b/model/head.py\n@@ -0,0 +1 @@\n+x\n"

    parsed = parse_diff(diff)

    assert parsed.strip == 1
    assert parsed.changes == (_change("train.py"), _change("model/head.py", is_new=True))


def test_a_plain_diff_with_bare_paths_is_read_as_written() -> None:
    diff = "--- src/train.py\t2024-01-01 00:00:00\n+++ src/train.py\n@@ -1 +1 @@\n-a\n+b\n"

    parsed = parse_diff(diff)

    assert parsed.strip == 0
    assert parsed.changes == (_change("src/train.py"),)


def test_a_removed_line_that_looks_like_a_file_header_stays_inside_its_hunk() -> None:
    diff = "--- a/q.sql\n+++ b/q.sql\n@@ -1,2 +1,2 @@\n--- drop table\n+++ keep table\n x\n"

    assert parse_diff(diff).changes == (_change("q.sql"),)


def test_prose_and_code_fences_around_a_diff_are_ignored() -> None:
    diff = "Here is my change:\n```diff\n" + _edit("train.py") + "```\nIt lowers lr.\n"

    assert parse_diff(diff).changes == (_change("train.py"),)


def test_quoted_paths_are_decoded() -> None:
    diff = (
        'diff --git "a/caf\\303\\251 \\"x\\".py" "b/caf\\303\\251 \\"x\\".py"\n'
        'new file mode 100644\n--- /dev/null\n+++ "b/caf\\303\\251 \\"x\\".py"\n'
        "@@ -0,0 +1 @@\n+x\n"
    )

    assert parse_diff(diff).changes == (_change('café "x".py', new_mode="100644", is_new=True),)


@pytest.mark.parametrize(
    ("diff", "protected", "surface", "expected"),
    [
        pytest.param(
            "--- /etc/passwd\n+++ /etc/passwd\n@@ -1 +1 @@\n-a\n+b\n",
            [],
            None,
            "'/etc/passwd' is absolute",
            id="absolute",
        ),
        pytest.param(
            _new_file("../outside.py"), [], None, "'../outside.py' contains a '..'", id="dotdot"
        ),
        pytest.param(
            _new_file("model/../../x.py"), [], None, "'model/../../x.py' contains a '..'", id="deep"
        ),
        pytest.param(
            _new_file(".git/hooks/pre-commit"),
            [],
            None,
            "'.git/hooks/pre-commit' is inside .git/",
            id="git-dir",
        ),
        pytest.param(_new_file("sub/.GIT/config"), [], None, "is inside .git/", id="git-dir-case"),
        pytest.param(
            _edit("eval/score.py"),
            ["eval/**"],
            None,
            "'eval/score.py' is protected (matches 'eval/**')",
            id="protected",
        ),
        pytest.param(
            _edit("eval/./score.py"),
            ["eval/score.py"],
            None,
            "'eval/./score.py' is protected",
            id="protected-unnormalised",
        ),
        pytest.param(
            "diff --git a/eval/score.py b/score.py\nsimilarity index 100%\n"
            "rename from eval/score.py\nrename to score.py\n",
            ["eval"],
            None,
            "'eval/score.py' is protected (matches 'eval')",
            id="rename-out-of-protected",
        ),
        pytest.param(
            "diff --git a/mine.py b/data/labels.csv\nsimilarity index 100%\n"
            "rename from mine.py\nrename to data/labels.csv\n",
            ["data/"],
            None,
            "'data/labels.csv' is protected (matches 'data/')",
            id="rename-into-protected",
        ),
        pytest.param(
            "diff --git a/eval/score.py b/eval/score.py\ndeleted file mode 100644\n"
            "--- a/eval/score.py\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            ["eval/**"],
            None,
            "'eval/score.py' is protected",
            id="delete-protected",
        ),
        pytest.param(
            _new_file("link", mode="120000"),
            [],
            None,
            "'link' would become a symlink (mode 120000)",
            id="symlink",
        ),
        pytest.param(
            "diff --git a/vendor b/vendor\nnew file mode 160000\nindex 0000000..1234567\n"
            "--- /dev/null\n+++ b/vendor\n@@ -0,0 +1 @@\n+Subproject commit 1234567\n",
            [],
            None,
            "'vendor' would become a submodule (gitlink) (mode 160000)",
            id="submodule",
        ),
        pytest.param(
            "diff --git a/w.bin b/w.bin\nnew file mode 100644\nindex 0000000..8352675\n"
            "GIT binary patch\nliteral 3\nKcmZQzWC8#H2LJ>B\n\nliteral 0\nHcmV?d00001\n\n",
            [],
            None,
            "'w.bin' is a binary change",
            id="git-binary-patch",
        ),
        pytest.param(
            "Binary files a/w.bin and b/w.bin differ\n",
            [],
            None,
            "'w.bin' is a binary change",
            id="binary-files-differ",
        ),
        pytest.param(
            _edit("src/data.py"),
            [],
            ["model/**", "train.py"],
            "'src/data.py' is outside the agent's surface (it may edit 'model/**', 'train.py')",
            id="outside-surface",
        ),
        pytest.param(
            "diff --git a/src/x.py b/model/x.py\nsimilarity index 100%\n"
            "rename from src/x.py\nrename to model/x.py\n",
            [],
            ["model/**"],
            "'src/x.py' is outside the agent's surface",
            id="rename-from-outside-surface",
        ),
    ],
)
def test_each_forbidden_edit_is_an_illegal_edit_naming_path_and_rule(
    diff: str, protected: list[str], surface: list[str] | None, expected: str
) -> None:
    with pytest.raises(EditRejected) as caught:
        _check(diff, protected, surface)

    assert caught.value.label == Label.ILLEGAL_EDIT
    assert expected in caught.value.reason


def test_every_broken_rule_is_reported_at_once() -> None:
    diff = _new_file("../x.py") + _edit("eval/score.py") + _new_file("link", mode="120000")

    with pytest.raises(EditRejected) as caught:
        _check(diff, protected=["eval"])

    assert caught.value.reason.count("; ") == 2


def test_an_empty_surface_allows_nothing_and_no_surface_allows_everything_unprotected() -> None:
    _check(_edit("anything/at/all.py"), surface=None)
    with pytest.raises(EditRejected, match="it may edit nothing"):
        _check(_edit("train.py"), surface=[])


@pytest.mark.parametrize("diff", ["", "I could not find a change worth making.\n"])
def test_a_diff_without_file_changes_is_patch_rejected(diff: str) -> None:
    with pytest.raises(EditRejected) as caught:
        _check(diff)

    assert caught.value.label == Label.PATCH_REJECTED


@pytest.mark.parametrize(
    ("diff", "where"),
    [
        pytest.param("@@ -1 +1 @@\n-a\n+b\n", "line 1: a hunk comes before", id="orphan-hunk"),
        pytest.param(
            "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n", "line 3: hunk ends early", id="short"
        ),
        pytest.param(
            "--- a/x\n+++ b/x\n@@ -1 +1,2 @@\n-a\n-b\n+c\n", "line 3: hunk has more", id="long"
        ),
        pytest.param("--- a/x\n+++ b/x\n@@ -a +b @@\n", "line 3: malformed hunk", id="header"),
        pytest.param('--- "a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n', "line 1: unreadable", id="quote"),
    ],
)
def test_a_diff_that_does_not_parse_is_patch_rejected_naming_the_line(
    diff: str, where: str
) -> None:
    with pytest.raises(EditRejected) as caught:
        parse_diff(diff)

    assert caught.value.label == Label.PATCH_REJECTED
    assert where in caught.value.reason


@pytest.mark.parametrize(
    ("pattern", "path", "expected"),
    [
        ("**", "a/b/c.py", True),
        ("**/*.py", "x.py", True),
        ("**/*.py", "a/b/x.py", True),
        ("**/*.py", "a/b/x.pyc", False),
        ("*.py", "x.py", True),
        ("*.py", "a/x.py", False),
        ("src/**/test_*.py", "src/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/test_a.py", True),
        ("src/**/test_*.py", "src/a/b/a_test.py", False),
        ("src/**", "src/a/b.py", True),
        ("src/**", "src", False),
        ("eval/*.py", "eval/score.py", True),
        ("eval/*.py", "eval/sub/score.py", False),
        ("data", "data/x.csv", True),
        ("data/", "data/sub/x.csv", True),
        ("data", "database.py", False),
        ("eval*", "evaluation/x.py", True),
        ("?.py", "a.py", True),
        ("?.py", "ab.py", False),
        ("a[1].py", "a[1].py", True),
        ("a[1].py", "a1.py", False),
        ("./train.py", "train.py", True),
        ("/train.py", "train.py", True),
        ("", "train.py", False),
    ],
)
def test_globs_are_rooted_and_star_stays_in_one_segment_while_double_star_spans_many(
    pattern: str, path: str, expected: bool
) -> None:
    assert glob_match(pattern, path) is expected
