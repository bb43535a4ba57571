"""The sandbox: run one untrusted trial, or its evaluation, under limits.

It takes a request and returns a result; it knows nothing of the API, the
database or Celery. Import from here; the submodules are implementation.
"""

from sandbox.contract import (
    EvalRequest,
    EvalResult,
    Limits,
    RunRequest,
    RunResult,
    SandboxUnavailable,
)
from sandbox.runner import RUNNERS, Runner, RunnerKind, make_runner

__all__ = [
    "RUNNERS",
    "EvalRequest",
    "EvalResult",
    "Limits",
    "RunRequest",
    "RunResult",
    "Runner",
    "RunnerKind",
    "SandboxUnavailable",
    "make_runner",
]
