"""A trial commit is exactly its parent plus a legal diff, and nothing else in the repo moves.

Runs real git on temporary repositories: imports from a repo at a ref, a
`file://` URL, a plain directory and a subdirectory of another repo; applies
diffs without a work tree; and checks that every rejection (does not apply,
illegal path, symlink, binary, protected file) leaves the refs as they were,
that concurrent trials on one parent stay independent, and that credentials
in a recipe URL appear nowhere.
"""

from __future__ import annotations

import logging
import os
import stat
import subprocess
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from app.domain.edits import Replace, render_diff
from app.domain.legality import check_paths, parse_diff
from app.domain.states import Label
from app.errors import Conflict, EditRejected, InvalidSpec, NotFound
from app.gitstore import GitStore, redact_url

PROTECTED = ["eval/**"]

EDIT_TRAIN = """\
diff --git a/train.py b/train.py
--- a/train.py
+++ b/train.py
@@ -1,2 +1,2 @@
 import model
-lr = 0.1
+lr = 0.05
"""

MULTI_FILE = (
    EDIT_TRAIN
    + """\
diff --git a/model/head.py b/model/head.py
new file mode 100644
--- /dev/null
+++ b/model/head.py
@@ -0,0 +1 @@
+HEAD = 1
diff --git a/README.md b/README.md
deleted file mode 100644
--- a/README.md
+++ /dev/null
@@ -1 +0,0 @@
-# digits
diff --git a/model/net.py b/model/network.py
similarity index 50%
rename from model/net.py
rename to model/network.py
--- a/model/net.py
+++ b/model/network.py
@@ -1,2 +1,2 @@
 import math
-width = 1
+width = 2
"""
)


@dataclass(frozen=True)
class Recipe:
    """A source repository with a tagged first commit and a later HEAD."""

    path: Path
    first: str
    head: str


def _git(cwd: Path, *args: str) -> str:
    """Plain git for building fixtures, independent of the machine's git config."""
    env = {
        **os.environ,
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Fixture",
        "GIT_AUTHOR_EMAIL": "fixture@example.com",
        "GIT_COMMITTER_NAME": "Fixture",
        "GIT_COMMITTER_EMAIL": "fixture@example.com",
    }
    done = subprocess.run(
        ["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def _write(root: Path, files: dict[str, str]) -> None:
    for name, content in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(content)


@pytest.fixture
def recipe(tmp_path: Path) -> Recipe:
    path = tmp_path / "recipe"
    path.mkdir()
    _git(path, "init", "--quiet", "--initial-branch=main")
    _write(
        path,
        {
            "train.py": "import model\nlr = 0.1\n",
            "model/net.py": "import math\nwidth = 1\n",
            "eval/score.py": "def score(): ...\n",
            "README.md": "# digits\n",
        },
    )
    _git(path, "add", "--all")
    _git(path, "commit", "--quiet", "-m", "first")
    first = _git(path, "rev-parse", "HEAD")
    _git(path, "tag", "--annotate", "v1", "-m", "v1")
    (path / "README.md").write_text("# digits, v2\n")
    _git(path, "commit", "--quiet", "--all", "-m", "second")
    return Recipe(path, first, _git(path, "rev-parse", "HEAD"))


@pytest.fixture
def store(tmp_path: Path, recipe: Recipe) -> tuple[GitStore, str]:
    return GitStore.create(tmp_path / "search.git", str(recipe.path), "v1")


def _refs(store: GitStore) -> str:
    return _git(store.root, "for-each-ref", "--format=%(refname) %(objectname)")


def _tree(store: GitStore, commit: str) -> str:
    return _git(store.root, "rev-parse", f"{commit}^{{tree}}")


def _apply(store: GitStore, parent: str, diff: str, ref: str = "refs/trials/1") -> str:
    return store.apply_diff(parent, diff, message="trial", ref=ref, protected=PROTECTED)


@pytest.mark.parametrize(("ref", "expected"), [("v1", "first"), ("main", "head"), (None, "head")])
def test_a_local_repository_is_imported_at_the_requested_ref(
    tmp_path: Path, recipe: Recipe, ref: str | None, expected: str
) -> None:
    store, base = GitStore.create(tmp_path / "search.git", str(recipe.path), ref)

    assert base == getattr(recipe, expected)
    assert store.resolve("refs/trialforge/base") == base


def test_a_commit_sha_can_be_the_ref(tmp_path: Path, recipe: Recipe) -> None:
    _, base = GitStore.create(tmp_path / "search.git", str(recipe.path), recipe.first)

    assert base == recipe.first


def test_a_file_url_is_fetched_like_a_path(tmp_path: Path, recipe: Recipe) -> None:
    store, base = GitStore.create(tmp_path / "search.git", recipe.path.as_uri(), "v1")

    assert base == recipe.first
    assert store.show_file(base, "README.md") == "# digits\n"


def test_a_plain_directory_is_snapshotted_honouring_its_gitignore(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    _write(source, {"train.py": "x = 1\n", ".gitignore": "*.log\n", "run.log": "noise\n"})
    (source / "train.py").chmod(0o755)

    store, base = GitStore.create(tmp_path / "search.git", str(source), None)

    assert store.list_files(base) == [".gitignore", "train.py"]
    assert _git(store.root, "ls-tree", base, "train.py").startswith("100755")


def test_a_subdirectory_of_another_repository_is_snapshotted_not_fetched(
    tmp_path: Path, recipe: Recipe
) -> None:
    store, base = GitStore.create(tmp_path / "search.git", str(recipe.path / "model"), "HEAD")

    assert store.list_files(base) == ["net.py"]
    assert base not in (recipe.first, recipe.head)


def test_a_plain_directory_holding_a_nested_repository_is_refused(
    tmp_path: Path, recipe: Recipe
) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    _write(source, {"train.py": "x = 1\n"})
    (recipe.path).rename(source / "vendored")

    with pytest.raises(InvalidSpec, match="nested git repositories: vendored"):
        GitStore.create(tmp_path / "search.git", str(source), None)


@pytest.mark.parametrize(
    ("source", "ref", "field"),
    [
        pytest.param("{tmp}/missing", None, "repo", id="missing-path"),
        pytest.param("{tmp}/empty", None, "repo", id="empty-directory"),
        pytest.param("", None, "repo", id="empty-source"),
        pytest.param("file://{tmp}/missing", None, "repo", id="missing-url"),
        pytest.param("{recipe}", "no-such-branch", "ref", id="unknown-ref"),
        pytest.param("{recipe}", "0" * 40, "ref", id="unknown-sha"),
        pytest.param("{tmp}/empty", "main", "ref", id="ref-of-plain-directory"),
    ],
)
def test_a_bad_recipe_is_an_invalid_spec_naming_the_field_and_leaves_no_repo(
    tmp_path: Path, recipe: Recipe, source: str, ref: str | None, field: str
) -> None:
    (tmp_path / "empty").mkdir()
    root = tmp_path / "search.git"

    with pytest.raises(InvalidSpec) as caught:
        GitStore.create(root, source.format(tmp=tmp_path, recipe=recipe.path), ref)

    assert caught.value.detail == [{"field": field, "message": caught.value.message}]
    assert not root.exists()


def test_credentials_in_a_recipe_url_appear_in_no_message_log_or_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "search.git"
    root.mkdir()  # it existed before, so the failed import leaves it for inspection
    caplog.set_level(logging.DEBUG)

    with pytest.raises(InvalidSpec) as caught:
        GitStore.create(root, "https://alice:s3cret-token@127.0.0.1:9/x.git", "main")

    shown = f"{caught.value.message} {caught.value.detail} {caplog.text}"
    assert "127.0.0.1:9" in shown
    assert "s3cret-token" not in shown
    assert "alice" not in shown
    stored = [path.read_bytes() for path in root.rglob("*") if path.is_file()]
    assert not any(b"s3cret-token" in content for content in stored)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@host/x.git", "https://***@host/x.git"),
        ("https://ghp_abc@github.com/o/r", "https://***@github.com/o/r"),
        ("ssh://git@host:22/x.git", "ssh://***@host:22/x.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("git@github.com:o/r.git", "git@github.com:o/r.git"),
        (
            "fatal: unable to access 'https://u:p@h/x/': refused",
            "fatal: unable to access 'https://***@h/x/': refused",
        ),
    ],
)
def test_redact_url_removes_the_whole_userinfo(url: str, expected: str) -> None:
    assert redact_url(url) == expected


def test_a_multi_file_diff_becomes_a_commit_with_the_expected_files(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store

    sha = _apply(repo, base, MULTI_FILE)

    assert repo.resolve("refs/trials/1") == sha
    assert repo.list_files(sha) == [
        "eval/score.py",
        "model/head.py",
        "model/network.py",
        "train.py",
    ]
    assert repo.show_file(sha, "train.py") == "import model\nlr = 0.05\n"
    assert repo.show_file(sha, "model/network.py") == "import math\nwidth = 2\n"
    assert repo.show_file(base, "README.md") == "# digits\n"
    assert _git(repo.root, "log", "-1", "--format=%P %an <%ae> %cn", sha) == (
        f"{base} Trialforge <trialforge@localhost> Trialforge"
    )


def test_the_diff_of_a_trial_is_stable_and_reapplies_to_the_same_tree(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store
    sha = _apply(repo, base, MULTI_FILE)

    shown = repo.diff(base, sha)

    assert shown == repo.diff(base, sha)
    assert "rename from model/net.py\nrename to model/network.py\n" in shown
    assert "-lr = 0.1\n+lr = 0.05\n" in shown
    assert "deleted file mode 100644\nindex " in shown
    assert all(
        len(line.split()[1].split("..")[0]) == 12
        for line in shown.splitlines()
        if line.startswith("index ")
    )
    again = _apply(repo, base, shown, ref="refs/trials/2")
    assert _tree(repo, again) == _tree(repo, sha)


def test_a_plain_diff_with_bare_paths_and_no_final_newline_applies(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store
    diff = "--- model/net.py\n+++ model/net.py\n@@ -2 +2 @@\n-width = 1\n+width = 3"

    sha = _apply(repo, base, diff)

    assert repo.show_file(sha, "model/net.py") == "import math\nwidth = 3\n"


@pytest.mark.parametrize(
    "diff",
    [
        pytest.param(EDIT_TRAIN.replace("lr = 0.1", "lr = 0.7"), id="context-mismatch"),
        pytest.param(EDIT_TRAIN.replace("train.py", "missing.py"), id="missing-file"),
        pytest.param(EDIT_TRAIN.replace("lr = 0.05", "lr = 0.1"), id="no-op"),
    ],
)
def test_a_diff_that_does_not_apply_is_patch_rejected_and_creates_no_ref(
    store: tuple[GitStore, str], diff: str
) -> None:
    repo, base = store
    before = _refs(repo)

    with pytest.raises(EditRejected) as caught:
        _apply(repo, base, diff)

    assert caught.value.label == Label.PATCH_REJECTED
    assert _refs(repo) == before


def test_git_explains_why_a_diff_does_not_apply(store: tuple[GitStore, str]) -> None:
    repo, base = store

    with pytest.raises(EditRejected, match="patch failed: train.py:1") as caught:
        _apply(repo, base, EDIT_TRAIN.replace("lr = 0.1", "lr = 0.7"))

    assert "/tmp" not in caught.value.reason


@pytest.mark.parametrize(
    ("diff", "named"),
    [
        pytest.param(
            "--- a/../escape.py\n+++ b/../escape.py\n@@ -0,0 +1 @@\n+x\n",
            "'../escape.py'",
            id="dotdot",
        ),
        pytest.param(
            EDIT_TRAIN.replace("train.py", "eval/score.py"), "'eval/score.py'", id="protected"
        ),
        pytest.param(
            "diff --git a/link b/link\nnew file mode 120000\n--- /dev/null\n+++ b/link\n"
            "@@ -0,0 +1 @@\n+/etc/passwd\n\\ No newline at end of file\n",
            "'link'",
            id="symlink",
        ),
        pytest.param(
            "diff --git a/w.bin b/w.bin\nnew file mode 100644\nindex 0000000..8352675\n"
            "GIT binary patch\nliteral 3\nKcmZQzWC8#H2LJ>B\n\nliteral 0\nHcmV?d00001\n\n",
            "'w.bin'",
            id="binary",
        ),
    ],
)
def test_an_illegal_edit_is_refused_and_leaves_the_refs_unchanged(
    store: tuple[GitStore, str], diff: str, named: str
) -> None:
    repo, base = store
    before = _refs(repo)

    with pytest.raises(EditRejected) as caught:
        _apply(repo, base, diff)

    assert caught.value.label == Label.ILLEGAL_EDIT
    assert named in caught.value.reason
    assert _refs(repo) == before


def test_the_tree_git_produced_is_checked_again_after_applying(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    _write(source, {"train.py": "x = 1\n"})
    (source / "link").symlink_to("train.py")
    repo, base = GitStore.create(tmp_path / "search.git", str(source), None)
    # A pure rename states no mode, so only the resulting tree shows a new symlink.
    diff = "diff --git a/link b/moved\nsimilarity index 100%\nrename from link\nrename to moved\n"
    check_paths(parse_diff(diff).changes, PROTECTED, None)
    before = _refs(repo)

    with pytest.raises(EditRejected) as caught:
        _apply(repo, base, diff)

    assert caught.value.label == Label.ILLEGAL_EDIT
    assert "'moved' would become a symlink" in caught.value.reason
    assert _refs(repo) == before


def test_an_edit_outside_the_surface_is_refused(store: tuple[GitStore, str]) -> None:
    repo, base = store

    with pytest.raises(EditRejected, match="'train.py' is outside the agent's surface"):
        repo.apply_diff(
            base, EDIT_TRAIN, message="t", ref="refs/trials/1", protected=[], surface=["model/**"]
        )


def test_two_trials_on_the_same_parent_are_independent(store: tuple[GitStore, str]) -> None:
    repo, base = store
    model_edit = "--- a/model/net.py\n+++ b/model/net.py\n@@ -2 +2 @@\n-width = 1\n+width = 9\n"

    first = _apply(repo, base, EDIT_TRAIN, ref="refs/trials/1")
    second = _apply(repo, base, model_edit, ref="refs/trials/2")

    assert repo.show_file(first, "model/net.py") == "import math\nwidth = 1\n"
    assert repo.show_file(second, "train.py") == "import model\nlr = 0.1\n"
    assert repo.resolve(f"{first}^") == repo.resolve(f"{second}^") == base


def test_concurrent_trials_into_one_repository_all_land_on_their_own_refs(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store

    def trial(number: int) -> str:
        diff = EDIT_TRAIN.replace("lr = 0.05", f"lr = {number}")
        return _apply(repo, base, diff, ref=f"refs/trials/{number}")

    with ThreadPoolExecutor(max_workers=8) as pool:
        shas = list(pool.map(trial, range(16)))

    for number, sha in enumerate(shas):
        assert repo.resolve(f"refs/trials/{number}") == sha
        assert repo.show_file(sha, "train.py") == f"import model\nlr = {number}\n"


def test_reapplying_the_same_edit_to_the_same_ref_returns_the_existing_commit(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store
    first = _apply(repo, base, EDIT_TRAIN)

    assert _apply(repo, base, EDIT_TRAIN) == first


def test_a_different_edit_on_an_existing_ref_is_a_conflict(store: tuple[GitStore, str]) -> None:
    repo, base = store
    first = _apply(repo, base, EDIT_TRAIN)

    with pytest.raises(Conflict):
        _apply(repo, base, EDIT_TRAIN.replace("lr = 0.05", "lr = 1"))

    assert repo.resolve("refs/trials/1") == first


def test_export_writes_the_tree_of_the_commit(tmp_path: Path, store: tuple[GitStore, str]) -> None:
    repo, base = store
    sha = _apply(repo, base, MULTI_FILE)
    dest = tmp_path / "mount" / "work"

    repo.export(sha, dest)

    written = sorted(str(path.relative_to(dest)) for path in dest.rglob("*") if path.is_file())
    assert written == sorted(repo.list_files(sha))
    assert (dest / "train.py").read_text() == "import model\nlr = 0.05\n"


def test_export_keeps_the_executable_bit(tmp_path: Path) -> None:
    source = tmp_path / "plain"
    source.mkdir()
    _write(source, {"run.sh": "#!/bin/sh\n"})
    (source / "run.sh").chmod(0o755)
    repo, base = GitStore.create(tmp_path / "search.git", str(source), None)

    repo.export(base, tmp_path / "out")

    assert (tmp_path / "out" / "run.sh").stat().st_mode & stat.S_IXUSR


def test_export_refuses_a_destination_that_is_not_empty(
    tmp_path: Path, store: tuple[GitStore, str]
) -> None:
    repo, base = store
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "stale.py").write_text("")

    with pytest.raises(FileExistsError):
        repo.export(base, tmp_path / "out")


def test_unknown_commits_and_files_are_not_found(store: tuple[GitStore, str]) -> None:
    repo, base = store

    with pytest.raises(NotFound):
        repo.resolve("refs/trials/404")
    with pytest.raises(NotFound):
        repo.show_file(base, "nope.py")
    with pytest.raises(NotFound):
        _apply(repo, "0" * 40, EDIT_TRAIN)


def test_combine_merges_two_wins_three_way_onto_a_third_commit(store: tuple[GitStore, str]) -> None:
    repo, base = store
    lr = _apply(repo, base, _edit("train.py", "lr = 0.1", "lr = 0.05"), "refs/trials/11")
    width = _apply(repo, base, _edit("model/net.py", "width = 1", "width = 2"), "refs/trials/12")
    readme = _apply(repo, base, _edit("README.md", "# digits", "# digits!"), "refs/trials/13")

    diff = repo.combine(readme, [(base, lr), (base, width)])
    merged = _apply(repo, readme, diff, "refs/trials/14")

    assert "lr = 0.05" in repo.show_file(merged, "train.py")
    assert "width = 2" in repo.show_file(merged, "model/net.py")
    assert repo.show_file(merged, "README.md") == "# digits!\n"


def test_combining_two_edits_of_the_same_line_is_a_rejected_patch(
    store: tuple[GitStore, str],
) -> None:
    repo, base = store
    low = _apply(repo, base, _edit("train.py", "lr = 0.1", "lr = 0.05"), "refs/trials/21")
    high = _apply(repo, base, _edit("train.py", "lr = 0.1", "lr = 0.5"), "refs/trials/22")

    with pytest.raises(EditRejected) as rejected:
        repo.combine(low, [(base, high)])

    assert rejected.value.label == Label.PATCH_REJECTED
    assert "does not merge" in rejected.value.reason


def _edit(path: str, old: str, new: str) -> str:
    return render_diff([Replace(path, old, new)], lambda _: _CONTENT[path])


_CONTENT = {
    "train.py": "import model\nlr = 0.1\n",
    "model/net.py": "import math\nwidth = 1\n",
    "README.md": "# digits\n",
}
