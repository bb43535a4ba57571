"""Metrics come only from the evaluator's last JSON-object line, and only after a clean exit.

Invariant: progress output never becomes a score, a malformed verdict is an
error with a reason (never a guessed or sentinel value), and NaN/Infinity are
refused because they poison comparisons between trials.
"""

from __future__ import annotations

from sandbox.metrics import evaluator_verdict, parse_metrics


def test_the_last_json_object_line_wins_over_earlier_ones_and_trailing_chatter() -> None:
    stdout = '{"val_acc": 0.5}\nprogress 100%\n{"val_acc": 0.93, "loss": 0.2}\ndone\n\n'

    assert parse_metrics(stdout) == ({"val_acc": 0.93, "loss": 0.2}, None)


def test_json_that_is_not_an_object_is_not_a_verdict() -> None:
    assert parse_metrics("0.93\n[0.93]\n") == (
        None,
        "no stdout line is a JSON object; the last was '[0.93]'",
    )


def test_nan_and_infinity_are_refused() -> None:
    metrics, error = parse_metrics('{"val_acc": NaN}\n{"loss": Infinity}')

    assert metrics is None
    assert error is not None


def test_silence_is_an_error_that_says_what_was_expected() -> None:
    assert parse_metrics(" \n\n") == (
        None,
        "evaluator printed nothing on stdout; expected one JSON object",
    )


def test_a_timed_out_or_failed_evaluator_yields_no_metrics_even_with_valid_json() -> None:
    stdout = '{"val_acc": 1.0}\n'

    timed_out = evaluator_verdict(exit_code=137, timed_out=True, oom_killed=False, stdout=stdout)
    oom = evaluator_verdict(exit_code=137, timed_out=False, oom_killed=True, stdout=stdout)
    crashed = evaluator_verdict(exit_code=1, timed_out=False, oom_killed=False, stdout=stdout)

    assert timed_out == (None, "evaluator exceeded its wall-clock limit")
    assert oom == (None, "evaluator ran out of memory")
    assert crashed == (None, "evaluator exited with code 1")
