"""The `trialforge` command: a thin shell over the same services the API uses.

Every command builds its settings when it runs (so the environment of the
call counts), and any Trialforge error ends it with a one-line reason on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from importlib.metadata import version
from typing import Annotated, Any

import typer
from docker.errors import DockerException
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError
from typer.core import TyperGroup

from app import db
from app.cli.demo import DemoFailed, run_demo
from app.cli.demo import Summary as DemoSummary
from app.cli.launcher import Stack, service_commands
from app.cli.progress import Progress
from app.cli.searches import score_text, search_app, trial_app
from app.config import Settings
from app.errors import TrialforgeError
from app.store import searches
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
sandbox_app = typer.Typer(no_args_is_help=True, help="The image trials run in.")
app.add_typer(db_app, name="db")
app.add_typer(search_app, name="search")
app.add_typer(trial_app, name="trial")
app.add_typer(sandbox_app, name="sandbox")


def _settings(ctx: typer.Context) -> Settings:
    settings: Settings = ctx.obj
    return settings


def _version(shown: bool) -> None:
    if shown:
        typer.echo(f"trialforge {version('trialforge')}")
        raise typer.Exit()


@app.callback()
def _load_settings(
    ctx: typer.Context,
    _: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
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
    port: Annotated[
        int, typer.Option(help="Where the dashboard listens meanwhile (a free one if taken).")
    ] = 8000,
    timeout: Annotated[float, typer.Option(help="Seconds before giving up.")] = 900.0,
    example: Annotated[
        str, typer.Option(help="digits, or charlm (split evaluation of a character model).")
    ] = "digits",
) -> None:
    """Run a search on a bundled example (digits by default) and print what it found."""
    settings = _settings(ctx)
    _interrupt_on_sigterm()
    progress = Progress(trials)
    free = _free_port(port)
    if free != port:
        progress.say(f"port {port} is taken; the dashboard listens on {free}")
    try:
        summary = run_demo(
            settings,
            trials=trials,
            port=free,
            say=progress.say,
            progress=progress.update,
            timeout_s=timeout,
            example=example,
        )
    except DemoFailed as exc:
        progress.close()
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from exc
    progress.close()
    typer.echo(_summary_table(summary))


def _free_port(wanted: int) -> int:
    """`wanted` when nothing listens on it here, else one the system picks."""
    for port in (wanted, 0):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return int(probe.getsockname()[1])
    raise DemoFailed("no free port on 127.0.0.1 for the dashboard")


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
        f"  baseline     {score_text(summary.baseline)}",
        f"  best         {score_text(summary.best)}",
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
            f"{agents:>6} {found.trials:>6} {score_text(found.baseline_score):>9} "
            f"{score_text(found.best_score):>9} {gain:>9} {found.keeps:>5} {failed:>6} "
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


def main() -> None:
    app()
