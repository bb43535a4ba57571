"""Creating a search: import its recipe, record the roster and the baseline, start it.

The recipe is imported into the search's own bare repo and trial 0, the
baseline (no edit), is recorded, so the lineage has its root before any
agent proposes. Local paths are checked first: absolute, existing, and under
the server's import roots when it sets them.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.orm import Session

from app.domain.spec import SearchSpec, is_url
from app.domain.states import SearchStatus, TrialStatus
from app.errors import InvalidSpec
from app.fingerprint import directory_digest
from app.gitstore import GitStore, redact_url
from app.store import events
from app.store.models import Agent, Search, Trial

BASELINE_HYPOTHESIS = "Baseline: the recipe as submitted, with no edit."


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
        summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        raise InvalidSpec(f"invalid search spec: {summary}", detail=errors)


def create_search(
    session: Session,
    spec: SearchSpec,
    *,
    repos_dir: Path,
    actor: str,
    import_roots: Sequence[Path] = (),
) -> Search:
    check_local_paths(spec, import_roots)
    stored = spec.model_copy(update={"repo": redact_url(spec.repo)}) if is_url(spec.repo) else spec
    search = Search(
        name=spec.name,
        status=SearchStatus.RUNNING,
        spec=stored.model_dump(mode="json"),
        repo_path="",
        base_commit="",
        agents=[
            Agent(name=agent.name, kind=agent.kind, spec=agent.model_dump(mode="json"))
            for agent in spec.agents
        ],
    )
    session.add(search)
    session.flush()

    # A unique suffix: SQLite may reuse the id of a search whose transaction rolled back.
    repo_path = repos_dir.resolve() / f"search-{search.id}-{uuid.uuid4().hex[:8]}.git"
    try:
        store, base_sha = GitStore.create(repo_path, spec.repo, spec.ref)
        search.repo_path, search.base_commit = str(repo_path), base_sha
        search.evaluator_digest = directory_digest(
            Path(spec.evaluator.path), Path(spec.evaluator.data) if spec.evaluator.data else None
        )
        baseline = Trial(
            search_id=search.id,
            number=0,
            hypothesis=BASELINE_HYPOTHESIS,
            commit_sha=base_sha,
            edit_hash=store.tree_of(base_sha),
            status=TrialStatus.READY,
            image=spec.image,
        )
        session.add(baseline)
        session.flush()
        store.create_ref(f"refs/trials/{baseline.id}", base_sha)
    except BaseException:
        shutil.rmtree(repo_path, ignore_errors=True)
        raise
    events.record(
        session,
        search_id=search.id,
        kind="search.created",
        actor=actor,
        data={"name": spec.name, "base_commit": base_sha},
    )
    return search
