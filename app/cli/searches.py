"""`trialforge search ...` and `trialforge trial ...`: the API's reads and moves, from a shell.

The same services and schemas as the API (a search's JSON, a trial's, the
export's lines), read from the database the settings name. Ids are the
store's: a search's trials are shown by their number in the search ("trial
27") with the id that `trial show` takes beside it.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Annotated

import typer

from app import db
from app.api.export import export_lines
from app.api.schemas import SearchOut, TrialOut
from app.config import Settings
from app.domain.spec import load_spec_file
from app.domain.states import Label, SearchAction, SearchStatus, TrialStatus
from app.services import control, import_recipe
from app.services.control import TERMINAL
from app.store import searches, trials
from app.store.health import search_warnings
from app.store.pagination import MAX_LIMIT
from app.store.report import halt_report
from app.store.trials import TrialFilter, TrialSort

search_app = typer.Typer(no_args_is_help=True, help="Submit, inspect and steer searches.")
trial_app = typer.Typer(no_args_is_help=True, help="Inspect trials.")


def score_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.6g}"


def _url(ctx: typer.Context) -> str:
    settings: Settings = ctx.obj
    url = settings.resolved_database_url
    db.ensure_schema_current(url)
    return url


@search_app.command("submit")
def search_submit(
    ctx: typer.Context,
    spec_file: Annotated[
        Path, typer.Argument(help="YAML spec; relative paths are from its folder.")
    ],
) -> None:
    """Create a search from a spec file and print its id."""
    settings: Settings = ctx.obj
    spec = load_spec_file(spec_file)
    with db.session_scope(_url(ctx)) as session:
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
    with db.session_scope(_url(ctx)) as session:
        page = searches.list_searches(session, limit=limit, cursor=None, status=status)
        stats = searches.search_stats(session, [s.id for s in page.items])
        typer.echo(f"{'id':>5}  {'status':<10} {'trials':>9}  {'baseline':>10} {'best':>10}  name")
        for search in page.items:
            stat = stats[search.id]
            done = f"{stat.trials_finished}/{stat.trials_total}"
            typer.echo(
                f"{search.id:>5}  {search.status:<10} {done:>9}  "
                f"{score_text(stat.baseline_score):>10} {score_text(stat.best_score):>10}  "
                f"{search.name}"
            )
        if page.next_cursor:
            typer.echo(f"({page.total - len(page.items)} older searches not shown)")


def _search_out(url: str, search_id: int) -> SearchOut:
    with db.session_scope(url) as session:
        search = searches.get_search(session, search_id)
        stats = searches.search_stats(session, [search.id])[search.id]
        return SearchOut.build(search, stats, search_warnings(session, search))


@search_app.command("show")
def search_show(ctx: typer.Context, search_id: int) -> None:
    """One search as JSON: spec, status, roster and counts."""
    out = _search_out(_url(ctx), search_id)
    typer.echo(json.dumps(out.model_dump(mode="json"), indent=2))


def _report_lines(url: str, search_id: int) -> list[str]:
    with db.session_scope(url) as session:
        found = halt_report(session, search_id)
        best = trials.get_trial(session, found.best_trial_id) if found.best_trial_id else None
        best_number = best.number if best is not None else None
        said = search_warnings(session, searches.get_search(session, search_id))
    per_point = "-" if found.cost_per_point is None else f"${found.cost_per_point:.4g}"
    shown_best = "" if best_number is None else f" (trial {best_number}, id {found.best_trial_id})"
    return [
        f"search {found.search_id}: {found.status}"
        + (f" ({found.halt_reason})" if found.halt_reason else ""),
        f"  trials        {found.trials}",
        f"  baseline      {score_text(found.baseline_score)}",
        f"  best          {score_text(found.best_score)}{shown_best}",
        f"  improvement   {'-' if found.improvement is None else f'{found.improvement:+.4g}'}",
        f"  keeps         {found.keeps}",
        "  labels        " + ", ".join(f"{k} {v}" for k, v in found.labels.items()),
        f"  cost          ${found.cost_usd:.4f} ({per_point} per point)",
        f"  sandbox time  {found.sandbox_seconds:.0f}s ({found.train_seconds:.0f}s training, "
        f"{found.eval_seconds:.0f}s evaluation, every seed; "
        f"{found.confirm_seconds:.0f}s confirming nominees)",
        f"  CPU time      {cpu_text(found.cpu_seconds, found.cpu_trials, found.trials)}",
        *(f"  warning       {warning}" for warning in said),
    ]


def cpu_text(seconds: float | None, counted: int, trials: int) -> str:
    if seconds is None:
        return "not counted (this host cannot; see the README's budget units)"
    return f"{seconds:.0f} CPU-seconds of training over {counted} of {trials} trials"


@search_app.command("report")
def search_report(ctx: typer.Context, search_id: int) -> None:
    """Why a search stopped, best against baseline, keeps, labels and cost per point."""
    typer.echo("\n".join(_report_lines(_url(ctx), search_id)))


def _act(ctx: typer.Context, search_id: int, action: SearchAction, yes: bool) -> None:
    url = _url(ctx)
    if action is SearchAction.CANCEL and not yes:
        name = _search_out(url, search_id).name
        typer.confirm(f"cancel search {search_id} ({name}) and its unfinished trials?", abort=True)
    with db.session_scope(url) as session:
        moved = control.apply_action(session, search_id, action, actor="cli")
        status = moved.status
    typer.echo(f"search {search_id}: {status}")


@search_app.command("pause")
def search_pause(ctx: typer.Context, search_id: int) -> None:
    """Stop starting new trials; running ones finish."""
    _act(ctx, search_id, SearchAction.PAUSE, yes=True)


@search_app.command("resume")
def search_resume(ctx: typer.Context, search_id: int) -> None:
    """Go on: a paused search, or a finished one after its budgets were raised."""
    _act(ctx, search_id, SearchAction.RESUME, yes=True)


@search_app.command("cancel")
def search_cancel(
    ctx: typer.Context,
    search_id: int,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
) -> None:
    """End the search now; its unfinished trials are cancelled (asks first)."""
    _act(ctx, search_id, SearchAction.CANCEL, yes=yes)


@search_app.command("watch")
def search_watch(
    ctx: typer.Context,
    search_id: int,
    interval: Annotated[float, typer.Option(min=0.1, help="Seconds between looks.")] = 2.0,
) -> None:
    """Follow a search until it stops: one progress line, then its report."""
    url, last = _url(ctx), ""
    live = sys.stdout.isatty()
    while True:
        out = _search_out(url, search_id)
        stats = out.stats
        line = (
            f"search {search_id} {out.status}: {stats.trials_finished}/{stats.trials_total} "
            f"trials, best {score_text(stats.best_score)}"
        )
        if line != last:
            typer.echo(f"\r{line}" if live else line, nl=not live)
            last = line
        if out.status in TERMINAL:
            break
        time.sleep(interval)
    typer.echo("\n" if live else "", nl=False)
    typer.echo("\n".join(_report_lines(url, search_id)))


@search_app.command("export")
def search_export(
    ctx: typer.Context,
    search_id: int,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Default: stdout.")] = None,
) -> None:
    """The whole trajectory as JSONL (as `GET /api/searches/{id}/export`)."""
    url = _url(ctx)
    head = _search_out(url, search_id)
    if output is None:
        for line in export_lines(url, head):
            sys.stdout.write(line)
        return
    with output.open("w") as file:
        count = sum(file.write(line) > 0 for line in export_lines(url, head))
    typer.echo(f"wrote {count} records to {output}", err=True)


@trial_app.command("list")
def trial_list(
    ctx: typer.Context,
    search_id: int,
    label: Label | None = None,
    agent: str | None = None,
    status: TrialStatus | None = None,
    sort: TrialSort = TrialSort.NEWEST,
    limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 50,
) -> None:
    """A search's trials, one line each: number, id, agent, outcome, score, hypothesis."""
    with db.session_scope(_url(ctx)) as session:
        search = searches.get_search(session, search_id)
        page = trials.list_trials(
            session, search, where=TrialFilter(agent=agent, label=label, status=status),
            sort=sort, limit=limit, cursor=None,
        )  # fmt: skip
        typer.echo(
            f"{'trial':>6} {'id':>7}  {'agent':<14} {'outcome':<26} {'score':>10}  hypothesis"
        )
        for trial in page.items:
            name = trial.agent.name if trial.agent else "baseline"
            outcome = f"{trial.label or trial.status}" + (
                f" ({trial.decision})" if trial.decision else ""
            )
            typer.echo(
                f"{trial.number:>6} {trial.id:>7}  {name[:14]:<14} {outcome[:26]:<26} "
                f"{score_text(trial.score):>10}  {trial.hypothesis[:60]}"
            )
        if page.next_cursor:
            typer.echo(f"({page.total - len(page.items)} more; narrow with --label or --agent)")


@trial_app.command("show")
def trial_show(ctx: typer.Context, trial_id: int) -> None:
    """One trial as JSON, whole: hypothesis, diff, log tail, transcript, metrics, cost."""
    with db.session_scope(_url(ctx)) as session:
        out = TrialOut.build(trials.get_trial(session, trial_id))
    typer.echo(json.dumps(out.model_dump(mode="json"), indent=2))
