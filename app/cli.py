"""The `trialforge` command: a thin shell over the same services the API uses.

Every command builds its settings when it runs (so the environment of the
call counts), and any Trialforge error ends it with a one-line reason on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Annotated, Any

import typer
from docker.errors import DockerException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from app import db, searches
from app.api.schemas import SearchOut
from app.config import Settings
from app.errors import TrialforgeError
from app.pagination import MAX_LIMIT
from app.spec import load_spec_file
from app.states import SearchStatus
from sandbox import image


class _ReportingGroup(TyperGroup):
    """Turn our errors into `error: <reason>` and exit 1, for every subcommand at once."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except TrialforgeError as exc:
            typer.echo(f"error: {exc.message}", err=True)
            raise typer.Exit(1) from exc
        except OperationalError as exc:
            where = make_url(ctx.obj.resolved_database_url).render_as_string(hide_password=True)
            typer.echo(f"error: cannot use the database at {where}: {exc.orig}", err=True)
            raise typer.Exit(1) from exc


app = typer.Typer(
    cls=_ReportingGroup, no_args_is_help=True, help="Trialforge: autonomous research."
)
db_app = typer.Typer(no_args_is_help=True, help="Database schema.")
search_app = typer.Typer(no_args_is_help=True, help="Submit and inspect searches.")
sandbox_app = typer.Typer(no_args_is_help=True, help="The image trials run in.")
app.add_typer(db_app, name="db")
app.add_typer(search_app, name="search")
app.add_typer(sandbox_app, name="sandbox")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


@app.callback()
def _load_settings(ctx: typer.Context) -> None:
    ctx.obj = Settings()


@app.command()
def serve(
    ctx: typer.Context,
    host: str = "127.0.0.1",
    port: int = 8000,
) -> None:
    """Run the REST API (OpenAPI docs at /docs)."""
    import uvicorn

    from app.api import create_app

    settings = _settings(ctx)
    db.ensure_schema_current(settings.resolved_database_url)
    uvicorn.run(create_app(settings), host=host, port=port)


@db_app.command("upgrade")
def db_upgrade(ctx: typer.Context, revision: str = "head") -> None:
    """Create or migrate the schema to `revision` (default: the newest)."""
    url = _settings(ctx).resolved_database_url
    db.migrate(url, revision)
    typer.echo(f"schema at {db.current_revision(url)}")


@db_app.command("downgrade")
def db_downgrade(ctx: typer.Context, revision: str) -> None:
    """Migrate the schema down to `revision` (`base` drops everything)."""
    url = _settings(ctx).resolved_database_url
    db.migrate(url, revision, down=True)
    typer.echo(f"schema at {db.current_revision(url) or 'base'}")


@search_app.command("submit")
def search_submit(
    ctx: typer.Context,
    spec_file: Annotated[
        Path, typer.Argument(help="YAML spec; relative paths are from its folder.")
    ],
) -> None:
    """Create a search from a spec file and print its id."""
    settings = _settings(ctx)
    spec = load_spec_file(spec_file)
    url = settings.resolved_database_url
    db.ensure_schema_current(url)
    with db.session_scope(url) as session:
        search = searches.create_search(session, spec, repos_dir=settings.repos_dir, actor="cli")
        search_id, base = search.id, search.base_commit
    typer.echo(f"search {search_id} created ({spec.name}, recipe at {base[:12]})")


@search_app.command("list")
def search_list(
    ctx: typer.Context,
    status: SearchStatus | None = None,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 50,
) -> None:
    """The newest searches, one line each."""
    url = _settings(ctx).resolved_database_url
    db.ensure_schema_current(url)
    with db.session_scope(url) as session:
        page = searches.list_searches(session, limit=limit, cursor=None, status=status)
        stats = searches.search_stats(session, [s.id for s in page.items])
        typer.echo(f"{'id':>5}  {'status':<10} {'trials':>9}  {'baseline':>10} {'best':>10}  name")
        for search in page.items:
            stat = stats[search.id]
            trials = f"{stat.trials_finished}/{stat.trials_total}"
            typer.echo(
                f"{search.id:>5}  {search.status:<10} {trials:>9}  "
                f"{_score(stat.baseline_score):>10} {_score(stat.best_score):>10}  {search.name}"
            )
        if page.next_cursor:
            typer.echo(f"({page.total - len(page.items)} older searches not shown)")


@search_app.command("show")
def search_show(ctx: typer.Context, search_id: int) -> None:
    """One search as JSON: spec, status, roster and counts."""
    url = _settings(ctx).resolved_database_url
    db.ensure_schema_current(url)
    with db.session_scope(url) as session:
        search = searches.get_search(session, search_id)
        out = SearchOut.build(search, searches.search_stats(session, [search.id])[search.id])
    typer.echo(json.dumps(out.model_dump(mode="json"), indent=2))


@sandbox_app.command("build")
def sandbox_build(
    offline: Annotated[
        bool,
        typer.Option(help="Build from the host's apt mirror (debootstrap) instead of pulling."),
    ] = False,
    tag: str = image.DEFAULT_TAG,
) -> None:
    """Build the sandbox image that specs name by default (needs a Docker daemon)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    build = image.build_offline if offline else image.build_from_dockerfile
    try:
        image_id = build(tag)
    except (image.ImageBuildError, DockerException) as exc:
        typer.echo(f"error: sandbox image build failed: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(f"built {tag} ({image_id})")


def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def main() -> None:
    app()
