"""The demo's progress on a terminal, and plain lines without one.

A bar on a terminal, created at the first finished trial, so what is said
before it (the runner, a missing LLM endpoint) stands on lines of its own and
never on the bar's; what is said later starts a new line. Without a terminal
(a pipe, a CI log) there is no bar and no stray label: one line per trial.
"""

from __future__ import annotations

import sys
from typing import Any

import typer


class Progress:
    def __init__(self, total: int, label: str = "trials") -> None:
        self.total, self.label, self.done = total, label, 0
        self.tty = sys.stdout.isatty()
        self._bar: Any = None

    def say(self, line: str) -> None:
        typer.echo(("\n" if self._bar is not None else "") + line, err=True)

    def update(self, finished: int) -> None:
        """`finished` more trials are done."""
        self.done += finished
        if not self.tty:
            typer.echo(f"{self.done}/{self.total} {self.label}")
            return
        if self._bar is None:
            self._bar = typer.progressbar(length=self.total, label=self.label).__enter__()
        self._bar.update(finished)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
