"""Reads the evaluator's verdict: one JSON object on the last line of its stdout.

Evaluators may print progress before the verdict, so the last non-empty line
that parses as a JSON object wins. Anything else is an evaluator error with a
reason a human can act on, never a guessed score.
"""

from __future__ import annotations

import json

REASON_CHARS = 200  # of the offending line quoted in the error


def evaluator_verdict(
    *, exit_code: int, timed_out: bool, oom_killed: bool, stdout: str
) -> tuple[dict[str, object] | None, str | None]:
    """(metrics, None) only from an evaluator that finished cleanly, else (None, reason)."""
    if timed_out:
        return None, "evaluator exceeded its wall-clock limit"
    if oom_killed:
        return None, "evaluator ran out of memory"
    if exit_code != 0:
        return None, f"evaluator exited with code {exit_code}"
    return parse_metrics(stdout)


def parse_metrics(stdout: str) -> tuple[dict[str, object] | None, str | None]:
    """(metrics, None) from the last JSON-object line of `stdout`, else (None, reason)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    if not lines:
        return None, "evaluator printed nothing on stdout; expected one JSON object"
    for line in reversed(lines):
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except ValueError:
            continue
        if isinstance(value, dict):
            return value, None
    return None, f"no stdout line is a JSON object; the last was {lines[-1][:REASON_CHARS]!r}"


def _reject_constant(name: str) -> float:
    """NaN and Infinity are not JSON and would poison comparisons between trials."""
    raise ValueError(f"{name} is not a valid metric value")
