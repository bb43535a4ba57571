"""Creating a search: import its recipe, check the spec against it, record it, start it.

The slow part comes first and touches no database: the recipe is fetched
(a git URL may take up to TRIALFORGE_GIT_FETCH_TIMEOUT_S) into a staging
repository, the spec is checked against it and the server's settings
(`app.domain.admission`), and the evaluator is hashed. Only then one short
unit of work records the search, its roster and trial 0, the baseline (no
edit), and the staged repository moves into place under the search's id; so
a slow or silent remote never holds the database's write lock, and a
refused spec writes nothing. The staging directory is removed on every exit
path, and a search's repository is removed again if its rows roll back.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy import event
from sqlalchemy.orm import Session, SessionTransaction

from app.config import Settings
from app.domain.admission import Check, RecipeTree, admit
from app.domain.fields import is_url
from app.domain.knobs import declared, knob_values
from app.domain.spec import SearchSpec
from app.domain.states import SearchStatus, TrialStatus
from app.errors import InvalidSpec, NotFound
from app.fingerprint import directory_digest
from app.gitstore import GitStore, redact_url
from app.store import events
from app.store.models import Agent, Search, Trial

logger = logging.getLogger(__name__)

BASELINE_HYPOTHESIS = "Baseline: the recipe as submitted, with no edit."
STAGING_PREFIX = ".staging-"  # in the repos dir: an import that is not (yet) a search's repo
_UNCOMMITTED = "trialforge.uncommitted_repos"  # session.info key: repos of unsaved searches


@dataclass(frozen=True)
class NewSearch:
    """A created search and every check its spec passed (what was verified, in words)."""

    search: Search
    checks: tuple[Check, ...]


@dataclass(frozen=True)
class _Staged:
    base_sha: str
    base_tree: str
    evaluator_digest: str
    checks: tuple[Check, ...]


def check_local_paths(spec: SearchSpec, roots: Sequence[Path] = ()) -> None:
    """Local paths must be absolute (the server knows no caller's cwd) and must exist.

    With import roots set, they must also lie under one (after symlinks are
    resolved), `file://` repos included: a caller of the API must not make
    the service read whatever directory it can.
    """
    errors = []
    paths = spec.local_paths()
    if spec.repo.startswith("file://"):
        paths["repo"] = unquote(urlsplit(spec.repo).path)
    for field, path in paths.items():
        if not Path(path).is_absolute():
            message = "must be an absolute path on the server (or a git URL for repo)"
        elif not Path(path).is_dir():
            message = f"no such directory on the server: {path}"
        elif roots and not any(Path(path).resolve().is_relative_to(r.resolve()) for r in roots):
            allowed = ", ".join(str(root) for root in roots)
            message = f"{path} is outside the server's import roots ({allowed})"
        else:
            continue
        errors.append({"field": field, "message": message})
    if errors:
        raise _refused(errors)


def create_search(
    session: Session, spec: SearchSpec, *, settings: Settings, actor: str
) -> NewSearch:
    """Import, check and record a search; raises `InvalidSpec` naming every bad field."""
    check_local_paths(spec, settings.import_root_paths)
    repos = settings.repos_dir.resolve()
    repos.mkdir(parents=True, exist_ok=True)
    # Beside the repos (one filesystem, so moving it into place is a rename), its own folder.
    scratch = Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=repos))
    staging = scratch / "recipe.git"
    placed: Path | None = None
    try:
        staged = _stage(spec, staging, settings)
        search = Search(
            name=spec.name,
            status=SearchStatus.RUNNING,
            spec=_stored(spec).model_dump(mode="json"),
            repo_path="",
            base_commit=staged.base_sha,
            evaluator_digest=staged.evaluator_digest,
            agents=[
                Agent(name=agent.name, kind=agent.kind, spec=agent.model_dump(mode="json"))
                for agent in spec.agents
            ],
        )
        session.add(search)
        session.flush()
        # A unique suffix: SQLite may reuse the id of a search whose transaction rolled back.
        placed = repos / f"search-{search.id}-{uuid.uuid4().hex[:8]}.git"
        staging.rename(placed)
        search.repo_path = str(placed)
        read = GitStore(placed).reader(staged.base_sha)
        baseline = Trial(
            search_id=search.id,
            number=0,
            hypothesis=BASELINE_HYPOTHESIS,
            commit_sha=staged.base_sha,
            edit_hash=staged.base_tree,
            status=TrialStatus.READY,
            image=spec.image,
            params=knob_values(declared(spec.agents), read) or None,
        )
        session.add(baseline)
        session.flush()
        GitStore(placed).create_ref(f"refs/trials/{baseline.id}", staged.base_sha)
        events.record(
            session,
            search_id=search.id,
            kind="search.created",
            actor=actor,
            data={"name": spec.name, "base_commit": staged.base_sha},
        )
    except BaseException:
        if placed is not None:
            shutil.rmtree(placed, ignore_errors=True)
        raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _remove_unless_committed(session, placed)
    return NewSearch(search, staged.checks)


def _stage(spec: SearchSpec, staging: Path, settings: Settings) -> _Staged:
    """The slow part, outside any transaction: import, check against the recipe, hash."""
    store, base_sha = GitStore.create(
        staging, spec.repo, spec.ref, fetch_timeout_s=settings.git_fetch_timeout_s
    )
    modes = store.list_modes(base_sha)

    def read(path: str) -> str | None:
        try:
            return store.show_file(base_sha, path)
        except NotFound:
            return None

    checked = admit(
        spec,
        RecipeTree(modes, read),
        settings.endpoint_policy,
        key_is_set=lambda name: settings.llm_key_from(name) is not None,
    )
    if checked.refused:
        logger.info(
            "search.refused name=%s fields=%s", spec.name, [c.field for c in checked.refused]
        )
        raise _refused([{"field": c.field, "message": c.message} for c in checked.refused])
    data = Path(spec.evaluator.data) if spec.evaluator.data else None
    found = [
        Check("repo", f"imported {base_sha[:12]}: {len(modes)} files, no symlink leaving it"),
        Check("evaluator.path", "exists; hashed with the held-out data" if data else "exists"),
    ]
    return _Staged(
        base_sha,
        store.tree_of(base_sha),
        directory_digest(Path(spec.evaluator.path), data),
        (*found, *checked.passed),
    )


def _stored(spec: SearchSpec) -> SearchSpec:
    """The spec as recorded: credentials in a repo URL never reach the database."""
    return spec.model_copy(update={"repo": redact_url(spec.repo)}) if is_url(spec.repo) else spec


def _refused(errors: list[dict[str, str]]) -> InvalidSpec:
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return InvalidSpec(f"invalid search spec: {summary}", detail=errors)


def _remove_unless_committed(session: Session, repo: Path) -> None:
    """`repo` belongs to rows not yet committed: if their transaction ends without a
    commit (the caller's later error, a failed commit), the repository goes too."""
    pending: list[Path] | None = session.info.get(_UNCOMMITTED)
    if pending is None:
        pending = session.info[_UNCOMMITTED] = _watched(session)
    pending.append(repo)


def _watched(session: Session) -> list[Path]:
    """A list of repositories that the session's next uncommitted end removes."""
    pending: list[Path] = []

    def committed(_: Session) -> None:
        pending.clear()

    def ended(_: Session, transaction: SessionTransaction) -> None:
        if transaction.parent is None:  # the unit of work, not a savepoint inside it
            for path in pending:
                shutil.rmtree(path, ignore_errors=True)
            pending.clear()

    event.listen(session, "after_commit", committed)
    event.listen(session, "after_transaction_end", ended)
    return pending
