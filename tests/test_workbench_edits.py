"""A session's `edit_file` follows the one exact-once replace rule of every edit path (issue 13).

Invariant: the session tool and single-shot replies share `replace_once`, so a
search text written with CRLF applies to a file with LF endings (the file
keeps its endings) in a session too, and both refuse the same ambiguous
edits with the same reasons; they share the hypothesis rule too, so neither
takes a placeholder (issue 16).
"""

from __future__ import annotations

import pytest

from app.domain.edits import MalformedEdit, Replace, render_diff
from app.domain.workbench import TrialRef, Workbench
from testing.proposals import Files

TRAIN_PY = "LR = 0.1\nEPOCHS = 3\nprint(LR)\n"


def bench() -> Workbench:
    base = TrialRef(0, "baseline", "", "ok", 0.5, None, "c0ffee", None, decision="baseline")
    return Workbench(
        repo=Files({"train.py": TRAIN_PY}), trials={0: base}, base=base,
        surface=["train.py"], protected=[],
    )  # fmt: skip


def test_a_crlf_search_text_edits_a_file_with_lf_endings_in_a_session() -> None:
    workbench = bench()

    answer = workbench.edit_file(
        "train.py", "LR = 0.1\r\nEPOCHS = 3\r\n", "LR = 0.05\r\nEPOCHS = 3\r\n"
    )

    assert answer == "edited train.py"
    assert workbench.scratch["train.py"] == "LR = 0.05\nEPOCHS = 3\nprint(LR)\n"


@pytest.mark.parametrize(
    ("search", "reason"),
    [("LR = 9", "does not occur in 'train.py'"), ("LR", "occurs 2 times"),
     ("", '"search" must not be empty')],
)  # fmt: skip
def test_the_session_and_a_reply_refuse_an_ambiguous_edit_for_the_same_reason(
    search: str, reason: str
) -> None:
    workbench = bench()

    answer = workbench.edit_file("train.py", search, "LR = 1")

    assert answer.startswith("refused: ") and reason in answer
    assert workbench.scratch == {}
    with pytest.raises(MalformedEdit, match=reason):
        render_diff(
            [Replace("train.py", search, "LR = 1")], Files({"train.py": TRAIN_PY}).files.get
        )


@pytest.mark.parametrize("placeholder", ["test", "  TBD.  ", "lower lr", ""])
def test_a_session_cannot_submit_a_placeholder_hypothesis(placeholder: str) -> None:
    """Issue 16: "test" once became the best and sat in the best line every agent reads."""
    workbench = bench()
    workbench.edit_file("train.py", "LR = 0.1", "LR = 0.05")

    answer = workbench.submit(placeholder)

    assert answer.startswith("refused: the hypothesis") and "says nothing" in answer
    assert workbench.submission is None
    assert workbench.submit("Halve the learning rate: the loss still oscillates.") == "submitted"
