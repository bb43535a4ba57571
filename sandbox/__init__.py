"""The sandbox: run one untrusted trial, or its evaluation, under limits.

It takes a request and returns a result; it knows nothing of the API, the
database or Celery. Import the contract from here; `sandbox.select` picks a
runner (and is the only module that probes Docker to do so).
"""

from sandbox.contract import (
    Backend,
    EvalRequest,
    EvalResult,
    Limits,
    Runner,
    RunRequest,
    RunResult,
    SandboxUnavailable,
    WorkerRequest,
)

__all__ = [
    "Backend",
    "EvalRequest",
    "EvalResult",
    "Limits",
    "RunRequest",
    "RunResult",
    "Runner",
    "SandboxUnavailable",
    "WorkerRequest",
]
