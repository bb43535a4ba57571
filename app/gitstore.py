"""A search's recipe history as one bare git repository; every trial is a commit.

Thin adapter over GitPython: it holds no policy beyond refusing what
`app.domain.legality` refuses. It never uses a work tree or the repository's shared
index, so several workers can commit trials into the same repository at once:
each call builds its tree in a private temporary index (`GIT_INDEX_FILE`) and
only the final `update-ref` of its own ref touches shared state.

Git runs hermetically (no system or global config, no prompts, a fixed
identity), so a trial commit does not depend on whoever runs the worker.
Credentials in a recipe URL never reach argv, logs, messages or the stored
config: the URL travels in the child's environment and text is redacted.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import git

from app.domain.legality import FileChange, check_paths, parse_diff, symlink_problems
from app.domain.states import Label
from app.errors import Conflict, EditRejected, InvalidSpec, NotFound

logger = logging.getLogger(__name__)

BASE_REF = "refs/trialforge/base"  # the imported starting recipe; trials descend from it
FETCH_TIMEOUT_S = 300.0  # default: a recipe fetch slower than this is reported as unreachable
DIFF_ABBREV = 12  # hex digits of blob ids in diff `index` lines, fixed so output is stable
ERROR_MAX_CHARS = 2_000  # git's error text kept in a rejection reason

_GIT_ENV = {
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_CONFIG_GLOBAL": os.devnull,
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_SSH_COMMAND": "ssh -o BatchMode=yes",
    "GIT_AUTHOR_NAME": "Trialforge",
    "GIT_AUTHOR_EMAIL": "trialforge@localhost",
    "GIT_COMMITTER_NAME": "Trialforge",
    "GIT_COMMITTER_EMAIL": "trialforge@localhost",
}
_REMOTE = "recipe"  # defined only in a fetch's environment, never in the repo's config
_URL = re.compile(r"(?:https?|ssh|git|file)://|[A-Za-z0-9_][\w.-]*@[A-Za-z0-9][\w.-]*:")
_URL_USERINFO = re.compile(r"://[^/\s]*@")
_GITLINK = "160000"  # the mode of a nested repository's entry
SYMLINK = "120000"  # the mode of a symlink's entry; its blob is the link's target


def redact_url(url: str) -> str:
    """`url` with any `user:password@` replaced by `***@`.

    Works on any text, so git's error messages go through it too. The whole
    userinfo goes because tokens are often passed as the user name.
    """
    return _URL_USERINFO.sub("://***@", url)


class GitStore:
    """The bare repository of one search, at `root`."""

    def __init__(self, root: Path, fetch_timeout_s: float = FETCH_TIMEOUT_S) -> None:
        self.root = root
        self.fetch_timeout_s = fetch_timeout_s
        self._repo = git.Repo(root)
        self._repo.git.update_environment(**_GIT_ENV)

    @classmethod
    def create(
        cls, root: Path, source: str, ref: str | None, *, fetch_timeout_s: float = FETCH_TIMEOUT_S
    ) -> tuple[GitStore, str]:
        """Make the bare repo at `root` and import the starting recipe; return it and the base sha.

        `source` is a git URL, the top of a local git repository (its `ref`,
        default HEAD, is fetched; uncommitted changes are not), or a plain
        local directory, snapshotted as one commit honouring its .gitignore.
        Raises `InvalidSpec` naming the field ("repo" or "ref") that is wrong,
        and for a recipe holding a symlink that leads outside it; a repo
        created by a failed import is removed.
        """
        existed = root.exists()
        git.Repo.init(root, bare=True, mkdir=True).close()
        store = cls(root, fetch_timeout_s)
        try:
            sha = store._import(source, ref)
            store._check_links(sha)
        except InvalidSpec as error:
            logger.info(
                "gitstore.import_failed root=%s source=%s detail=%s",
                root,
                redact_url(source),
                error.detail,
            )
            if not existed:
                shutil.rmtree(root)
            raise
        logger.info(
            "gitstore.imported root=%s source=%s ref=%s sha=%s", root, redact_url(source), ref, sha
        )
        return store, sha

    def apply_diff(
        self,
        parent_sha: str,
        diff_text: str,
        *,
        message: str,
        ref: str,
        protected: Sequence[str],
        surface: Sequence[str] | None = None,
    ) -> str:
        """Commit `diff_text` on top of `parent_sha` as `ref`; return the new commit's sha.

        Raises `EditRejected` (`illegal_edit` from the legality rules, checked
        on the diff and again on the tree git produced; `patch_rejected` when
        it does not parse, does not apply or changes nothing), `NotFound` for
        an unknown parent, and `Conflict` when `ref` already holds a different
        edit. Re-applying the same edit to the same `ref` returns the existing
        commit, so a redelivered task is a no-op. `ref` is untouched on error.
        """
        parsed = parse_diff(diff_text)
        check_paths(parsed.changes, protected, surface)
        parent = self.resolve(parent_sha)
        patch = diff_text if diff_text.endswith("\n") else diff_text + "\n"
        with tempfile.TemporaryDirectory(prefix="trialforge-apply-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch, "index"))}
            patch_file = Path(scratch, "edit.diff")
            patch_file.write_text(patch, encoding="utf-8")
            self._git("read-tree", parent, env=env)
            status, _, stderr = self._run(
                "apply", "--cached", f"-p{parsed.strip}", str(patch_file), env=env
            )
            if status != 0:
                raise EditRejected(
                    Label.PATCH_REJECTED,
                    f"the diff does not apply to {parent[:12]}: {_clean(stderr)}",
                )
            tree = self._git("write-tree", env=env)
        self._check_tree(parent, tree, protected, surface, ref=ref)
        commit = self._git("commit-tree", tree, "-p", parent, "-m", message)
        sha = self.create_ref(ref, commit)
        logger.info("gitstore.committed ref=%s parent=%s sha=%s", ref, parent, sha)
        return sha

    def diff(self, a_sha: str, b_sha: str) -> str:
        """`git diff` from `a_sha` to `b_sha`, rendered the same way on every machine."""
        return self._git(
            "diff",
            "--no-color",
            "--no-ext-diff",
            "--no-textconv",
            "--find-renames",
            f"--abbrev={DIFF_ABBREV}",
            self.resolve(a_sha),
            self.resolve(b_sha),
            strip=False,
        )

    def show_file(self, sha: str, path: str) -> str:
        """The content of `path` at `sha`; raises `NotFound` when there is no such file."""
        commit = self.resolve(sha)
        status, content, _ = self._run("cat-file", "blob", f"{commit}:{path}")
        if status != 0:
            raise NotFound(f"no file {path!r} at {commit[:12]}")
        return content

    def reader(self, sha: str) -> Callable[[str], str | None]:
        """`read(path)`: the file at `sha`, or None when there is none (what edits and knobs
        read a recipe through)."""

        def read(path: str) -> str | None:
            try:
                return self.show_file(sha, path)
            except NotFound:
                return None

        return read

    def list_files(self, sha: str) -> list[str]:
        """Every file path in the tree of `sha`, repo-relative, in git's order."""
        listing = self._git("ls-tree", "-r", "-z", "--name-only", self.resolve(sha), strip=False)
        return [path for path in listing.split("\0") if path]

    def list_modes(self, sha: str) -> dict[str, str]:
        """Every file path in the tree of `sha` with its git mode (`100755` is executable)."""
        listing = self._git("ls-tree", "-r", "-z", self.resolve(sha), strip=False)
        modes = {}
        for entry in listing.split("\0"):
            if entry:
                meta, path = entry.split("\t", 1)
                modes[path] = meta.split(" ", 1)[0]
        return modes

    def export(self, sha: str, dest: Path) -> None:
        """Write the tree of `sha` into `dest` (absent or empty) for the sandbox to mount.

        Extraction uses tarfile's `data` filter, so nothing lands outside
        `dest`; a recipe whose symlinks point outside it fails to export.
        """
        commit = self.resolve(sha)
        if dest.exists() and any(dest.iterdir()):
            raise FileExistsError(f"export destination {dest} is not empty")
        dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile() as archive:
            self._repo.archive(archive, commit, format="tar", worktree_attributes=True)
            archive.seek(0)
            with tarfile.open(fileobj=archive) as tar:
                tar.extractall(dest, filter="data")

    def check_commit(
        self, sha: str, protected: Sequence[str], surface: Sequence[str] | None = None
    ) -> None:
        """Run the legality rules on what `sha` changed against its first parent.

        The last line of defence before untrusted code runs: whatever produced
        the commit (an agent's diff, a combiner's merge, a re-run), the files
        it actually touched are checked. Raises `EditRejected`.
        """
        commit = self.resolve(sha)
        parent = self._run("rev-parse", "--verify", "--quiet", f"{commit}^")[1].strip()
        if not parent:
            return  # a root commit is the imported recipe itself, not an edit
        changes = self._tree_changes(parent, commit)
        if changes:  # an empty edit is not illegal; the search loop labels it elsewhere
            check_paths(changes, protected, surface)

    def combine(self, base_sha: str, edits: Sequence[tuple[str, str]]) -> str:
        """The diff from `base_sha` that makes every edit in it, merged three-way.

        Each edit is `(parent, commit)`: what that commit changed on its own
        parent is replayed onto the result so far, with git's three-way merge
        of file contents. Raises `EditRejected(patch_rejected)` on a conflict.
        """
        base = self.resolve(base_sha)
        with tempfile.TemporaryDirectory(prefix="trialforge-combine-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch, "index"))}
            self._git("read-tree", base, env=env)
            for parent, commit in edits:
                patch = Path(scratch, "edit.diff")
                patch.write_text(self.diff(parent, commit), encoding="utf-8")
                status, _, stderr = self._run("apply", "--cached", "--3way", str(patch), env=env)
                if status != 0:
                    raise EditRejected(
                        Label.PATCH_REJECTED,
                        f"the edit of {commit[:12]} does not merge: {_clean(stderr)}",
                    )
            tree = self._git("write-tree", env=env)
        return self._git(
            "diff", "--no-color", "--no-ext-diff", "--no-textconv", base, tree, strip=False
        )

    def tree_of(self, sha: str) -> str:
        """The tree a commit records: equal for two commits with the same files."""
        return self._git("rev-parse", f"{self.resolve(sha)}^{{tree}}")

    def resolve(self, ref: str) -> str:
        """The full sha of the commit `ref` names; raises `NotFound` when it names none."""
        status, out, _ = self._run(
            "rev-parse", "--verify", "--quiet", "--end-of-options", f"{ref}^{{commit}}"
        )
        if status != 0:
            raise NotFound(f"{ref!r} names no commit in {self.root}")
        return out.strip()

    def _check_links(self, sha: str) -> None:
        """Refuse a recipe whose symlinks lead outside it (`app.domain.legality`)."""
        links = {
            path: self.show_file(sha, path)
            for path, mode in self.list_modes(sha).items()
            if mode == SYMLINK
        }
        problems = symlink_problems(links)
        if problems:
            raise _spec_error("repo", "the recipe holds symlinks: " + "; ".join(problems))

    def _import(self, source: str, ref: str | None) -> str:
        if _URL.match(source):
            return self._fetch(source, ref)
        path = Path(source).expanduser()
        if not source or not path.is_dir():
            raise _spec_error("repo", f"recipe path {source!r} is not an existing directory")
        if _is_repo_top(path):
            return self._fetch(str(path.resolve()), ref)
        if ref not in (None, "HEAD"):
            raise _spec_error("ref", f"{source!r} is not a git repository; it has no ref {ref!r}")
        return self._snapshot(path)

    def _fetch(self, url: str, ref: str | None) -> str:
        """Fetch `ref` of `url` into BASE_REF; the URL lives only in the child's environment."""
        env = {
            "GIT_CONFIG_COUNT": "1",
            "GIT_CONFIG_KEY_0": f"remote.{_REMOTE}.url",
            "GIT_CONFIG_VALUE_0": url,
        }
        wanted = ref or "HEAD"
        status, _, stderr = self._run(
            "fetch",
            "--quiet",
            "--no-tags",
            "--no-write-fetch-head",
            _REMOTE,
            f"+{wanted}:{BASE_REF}",
            env=env,
            timeout_s=self.fetch_timeout_s,
        )
        if status != 0:
            # Only a failed fetch pays for this probe: a reachable repo means the ref is wrong.
            blame_ref = ref is not None and self._reachable(env)
            raise _spec_error(
                "ref" if blame_ref else "repo",
                f"cannot fetch {wanted!r} from {redact_url(url)}: {_clean(stderr)}",
            )
        status, sha, _ = self._run("rev-parse", "--verify", "--quiet", f"{BASE_REF}^{{commit}}")
        if status != 0:
            self._git("update-ref", "-d", BASE_REF)
            raise _spec_error("ref", f"{wanted!r} in {redact_url(url)} is not a commit")
        self._git("update-ref", BASE_REF, sha.strip())  # peel an annotated tag
        return sha.strip()

    def _reachable(self, env: Mapping[str, str]) -> bool:
        """Whether the remote in `env` answers at all."""
        probe = ("ls-remote", "--quiet", _REMOTE, "HEAD")
        return self._run(*probe, env=env, timeout_s=self.fetch_timeout_s)[0] == 0

    def _snapshot(self, directory: Path) -> str:
        """Commit the files of a plain directory, as `git add --all` in it would see them."""
        with tempfile.TemporaryDirectory(prefix="trialforge-import-") as scratch:
            env = {"GIT_INDEX_FILE": str(Path(scratch, "index"))}
            self._git(f"--work-tree={directory.resolve()}", "add", "--all", env=env)
            entries = self._git("ls-files", "--stage", "-z", env=env, strip=False).split("\0")
            if not any(entries):
                raise _spec_error("repo", f"recipe directory {str(directory)!r} has no files")
            nested = [entry.split("\t", 1)[1] for entry in entries if entry.startswith(_GITLINK)]
            if nested:
                raise _spec_error(
                    "repo", f"recipe directory holds nested git repositories: {', '.join(nested)}"
                )
            tree = self._git("write-tree", env=env)
        commit = self._git("commit-tree", tree, "-m", f"Import recipe from {directory}")
        self._git("update-ref", BASE_REF, commit)
        return commit

    def _check_tree(
        self,
        parent: str,
        tree: str,
        protected: Sequence[str],
        surface: Sequence[str] | None,
        *,
        ref: str,
    ) -> None:
        """Run the legality rules on what git actually changed, not on what the diff claimed."""
        changes = self._tree_changes(parent, tree)
        if not changes:
            raise EditRejected(Label.PATCH_REJECTED, "the diff applies but changes no file")
        try:
            check_paths(changes, protected, surface)
        except EditRejected as rejection:
            logger.warning(
                "gitstore.tree_check_failed ref=%s parent=%s reason=%s", ref, parent, rejection
            )
            raise

    def _tree_changes(self, parent: str, tree: str) -> tuple[FileChange, ...]:
        """Files that differ between two trees; renames appear as a delete plus an add."""
        out = self._git(
            "diff-tree", "-r", "-z", "--no-renames", "--raw", "--numstat", parent, tree, strip=False
        )
        tokens = out.split("\0")
        raw: list[tuple[str, str, str]] = []  # (new mode, status letter, path)
        binary: set[str] = set()
        index = 0
        while index < len(tokens):
            token = tokens[index]
            if token.startswith(":"):
                fields = token[1:].split()
                raw.append((fields[1], fields[4], tokens[index + 1]))
                index += 2
                continue
            if token.startswith("-\t-\t"):
                binary.add(token.split("\t", 2)[2])
            index += 1
        return tuple(
            FileChange(
                path=path,
                old_path=None,
                new_mode=None if status == "D" else mode,
                is_binary=path in binary,
                is_delete=status == "D",
                is_new=status == "A",
            )
            for mode, status, path in raw
        )

    def create_ref(self, ref: str, commit: str) -> str:
        """Point the new `ref` at `commit`, or keep an existing one holding the same edit."""
        status, _, stderr = self._run("update-ref", ref, commit, "")
        if status == 0:
            return commit
        held = self._run("rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}")[1].strip()
        if held == commit or (held and self._edit_of(held) == self._edit_of(commit)):
            return held
        raise Conflict(f"cannot create {ref}: {_clean(stderr)}")

    def _edit_of(self, commit: str) -> str:
        """A commit's tree and parent: equal for two commits of the same edit."""
        return self._git("rev-parse", f"{commit}^{{tree}}", f"{commit}^")

    def _git(self, *args: str, env: Mapping[str, str] | None = None, strip: bool = True) -> str:
        """Run git where failure means a broken repository or a bug: it raises GitCommandError."""
        return self._repo.git.execute(["git", *args], env=env, strip_newline_in_stdout=strip)

    def _run(
        self, *args: str, env: Mapping[str, str] | None = None, timeout_s: float | None = None
    ) -> tuple[int, str, str]:
        """Run git where failure is an outcome to map: return (status, stdout, stderr)."""
        return self._repo.git.execute(
            ["git", *args],
            with_extended_output=True,
            with_exceptions=False,
            env=env,
            kill_after_timeout=timeout_s,
            strip_newline_in_stdout=False,
        )


def _is_repo_top(path: Path) -> bool:
    """Whether `path` itself is a git repository (work tree top or bare), not inside one."""
    try:
        git.Repo(path).close()
    except git.InvalidGitRepositoryError:
        return False
    return True


def _spec_error(field: str, message: str) -> InvalidSpec:
    return InvalidSpec(message, detail=[{"field": field, "message": message}])


def _clean(stderr: str) -> str:
    """Git's error text for a person: no hints, no blank lines, no credentials, bounded."""
    lines = [line.strip() for line in stderr.splitlines()]
    kept = [line for line in lines if line and not line.startswith("hint:")]
    return redact_url("\n".join(kept))[:ERROR_MAX_CHARS]
