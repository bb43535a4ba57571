"""The `trialforge` command: a thin shell over the same services the API uses.

Every command builds its settings when it runs (so the environment of the
call counts), and any Trialforge error ends it with a one-line reason on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from docker.errors import DockerException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from app import db
from app.api.schemas import SearchOut
from app.cli.demo import DemoFailed, run_demo
from app.cli.demo import Summary as DemoSummary
from app.cli.launcher import Stack, service_commands
from app.config import Settings
from app.domain.spec import load_spec_file
from app.domain.states import SearchStatus
from app.errors import TrialforgeError
from app.services import import_recipe
from app.store import searches
from app.store.pagination import MAX_LIMIT
from app.store.report import halt_report
from sandbox import image

SUPERVISE_S = 0.5  # how often `up` looks at its children


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
    migrate: Annotated[bool, typer.Option(help="Upgrade the schema first.")] = False,
) -> None:
    """Run the REST API and the dashboard (OpenAPI docs at /docs)."""
    import uvicorn

    from app.server import create_app

    settings = _settings(ctx)
    if migrate:
        db.migrate(settings.resolved_database_url)
    db.ensure_schema_current(settings.resolved_database_url)
    uvicorn.run(create_app(settings), host=host, port=port)


@app.command()
def worker(
    ctx: typer.Context,
    queues: Annotated[
        str, typer.Option(help="Comma-separated: propose (model calls), trials (sandbox runs).")
    ] = "propose,trials",
    concurrency: Annotated[int, typer.Option(min=1, help="Processes: one per trial slot.")] = 2,
) -> None:
    """Run a Celery worker: proposals, trials, or both."""
    settings = _settings(ctx)
    db.ensure_schema_current(settings.resolved_database_url)
    from workers.celery_app import celery, prepare_broker

    named = [
        settings.trial_queue if q.strip() == "trials" else q.strip() for q in queues.split(",")
    ]
    prepare_broker(celery, settings, named)
    celery.worker_main(
        [
            "worker",
            f"--queues={','.join(named)}",
            f"--concurrency={concurrency}",
            f"--hostname={'+'.join(named)}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
    )


@app.command()
def scheduler(
    ctx: typer.Context,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between sweeps.")] = 2.0,
) -> None:
    """Tick every running search periodically: reap lost trials, keep slots full, halt."""
    settings = _settings(ctx)
    db.ensure_schema_current(settings.resolved_database_url)
    from workers.celery_app import celery, prepare_broker
    from workers.tasks import schedule_forever

    prepare_broker(celery, settings)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        schedule_forever(interval, stop)
    except KeyboardInterrupt:
        stop.set()


@app.command()
def up(
    ctx: typer.Context,
    host: str = "127.0.0.1",
    port: int = 8000,
    slots: Annotated[int, typer.Option(min=1, help="Trial worker processes.")] = 2,
) -> None:
    """API, scheduler and workers in one command (the embedded default needs nothing else)."""
    settings = _settings(ctx)
    db.migrate(settings.resolved_database_url)
    stack = Stack({})
    stack.prepare(settings)
    _interrupt_on_sigterm()
    for command in service_commands(host, port, slots):
        stack.start(*command)
    typer.echo(f"trialforge up: dashboard and API on http://{host}:{port} (Ctrl-C stops all)")
    try:
        while True:  # a child that dies is restarted with backoff, and reported
            stack.supervise(lambda line: typer.echo(f"trialforge up: {line}", err=True))
            time.sleep(SUPERVISE_S)
    except KeyboardInterrupt:
        pass
    finally:
        stack.stop()


@app.command()
def demo(
    ctx: typer.Context,
    trials: Annotated[int, typer.Option(min=2, help="Trials, the baseline included.")] = 12,
    port: Annotated[int, typer.Option(help="Where the dashboard listens meanwhile.")] = 8000,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 900.0,
) -> None:
    """Run a search on the bundled digits example and print what it found."""
    settings = _settings(ctx)
    _interrupt_on_sigterm()
    with typer.progressbar(length=trials, label="trials") as bar:
        try:
            summary = run_demo(
                settings,
                trials=trials,
                port=port,
                say=lambda line: typer.echo(line, err=True),
                progress=bar.update,
                timeout_s=timeout,
            )
        except DemoFailed as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from exc
    typer.echo(_summary_table(summary))


def _interrupt_on_sigterm() -> None:
    """SIGTERM (a service manager, `timeout`, `docker stop`) stops the children like Ctrl-C."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupt)


def _summary_table(summary: DemoSummary) -> str:
    improvement = summary.improvement
    agents = "LLM specialists and the control arm" if summary.llm else "the control arm alone"
    lines = [
        f"search {summary.search_id}: {summary.trials} trials by {agents}, "
        f"{summary.backend.value} runner ({summary.halt_reason or 'stopped'})",
        f"  baseline     {_score(summary.baseline)}",
        f"  best         {_score(summary.best)}",
        f"  improvement  {'-' if improvement is None else f'{improvement:+.4g}'}",
        "  labels       " + ", ".join(f"{k} {v}" for k, v in summary.labels.items()),
        f"browse it: trialforge serve, then http://127.0.0.1:8000/searches/{summary.search_id}",
    ]
    return "\n".join(lines)


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
        created = import_recipe.create_search(session, spec, settings=settings, actor="cli")
        search_id, base = created.search.id, created.search.base_commit
    typer.echo(f"search {search_id} created ({spec.name}, recipe at {base[:12]})")
    for check in created.checks:
        typer.echo(f"  checked {check.field}: {check.message}")


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


@search_app.command("report")
def search_report(ctx: typer.Context, search_id: int) -> None:
    """Why a search stopped, best against baseline, keeps, labels and cost per point."""
    url = _settings(ctx).resolved_database_url
    db.ensure_schema_current(url)
    with db.session_scope(url) as session:
        found = halt_report(session, search_id)
    per_point = "-" if found.cost_per_point is None else f"${found.cost_per_point:.4g}"
    lines = [
        f"search {found.search_id}: {found.status}"
        + (f" ({found.halt_reason})" if found.halt_reason else ""),
        f"  trials        {found.trials}",
        f"  baseline      {_score(found.baseline_score)}",
        f"  best          {_score(found.best_score)} (trial id {found.best_trial_id or '-'})",
        f"  improvement   {'-' if found.improvement is None else f'{found.improvement:+.4g}'}",
        f"  keeps         {found.keeps}",
        "  labels        " + ", ".join(f"{k} {v}" for k, v in found.labels.items()),
        f"  cost          ${found.cost_usd:.4f} ({per_point} per point)",
        f"  sandbox time  {found.sandbox_seconds:.0f}s ({found.train_seconds:.0f}s training, "
        f"{found.eval_seconds:.0f}s evaluation, every seed)",
    ]
    typer.echo("\n".join(lines))


@app.command()
def compare(
    ctx: typer.Context,
    search_ids: Annotated[list[int], typer.Argument(help="Two or more search ids.")],
) -> None:
    """Searches side by side (e.g. a control study): best, keeps, labels, cost per point."""
    url = _settings(ctx).resolved_database_url
    db.ensure_schema_current(url)
    with db.session_scope(url) as session:
        rows = [
            (searches.get_search(session, i), len(searches.get_search(session, i).agents),
             halt_report(session, i))
            for i in search_ids
        ]  # fmt: skip
    typer.echo(
        f"{'id':>4}  {'name':<20} {'feedback':<9} {'agents':>6} {'trials':>6} {'baseline':>9} "
        f"{'best':>9} {'gain':>9} {'keeps':>5} {'failed':>6} {'cost':>9} {'$/point':>9}"
    )
    for search, agents, found in rows:
        failed = sum(n for label, n in found.labels.items() if label != "ok")
        gain = "-" if found.improvement is None else f"{found.improvement:+.4g}"
        per_point = "-" if found.cost_per_point is None else f"{found.cost_per_point:.4g}"
        typer.echo(
            f"{search.id:>4}  {search.name[:20]:<20} {search.search_spec.feedback:<9} "
            f"{agents:>6} {found.trials:>6} {_score(found.baseline_score):>9} "
            f"{_score(found.best_score):>9} {gain:>9} {found.keeps:>5} {failed:>6} "
            f"{found.cost_usd:>9.4f} {per_point:>9}"
        )


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
