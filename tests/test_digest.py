"""The prompt a specialist sees: the lineage that matters, within its token bound.

Invariant: the task, the rules, the parent's files and the failures (with
their labels and log tails) reach the model; when the lineage is long, older
and less useful material is dropped first and the bound always holds.
"""

from __future__ import annotations

from app.domain.digest import CHARS_PER_TOKEN, Digest, TrialNote, build_messages
from app.domain.states import Direction

PARENT = TrialNote(number=4, agent="opt", hypothesis="warmup", label="ok", score=0.91)
CRASH = TrialNote(
    number=5,
    agent="arch",
    hypothesis="deeper net",
    label="crash",
    score=None,
    reason="exited with code 1",
    log_tail="Traceback...\nRuntimeError: shape mismatch\n",
)
DIGEST = Digest(
    task="Reach 94% on CIFAR-10 fastest.",
    metric="val_acc",
    direction=Direction.MAXIMIZE,
    gates=["val_acc >= 0.94"],
    agent="opt",
    brief="Optimizer and schedule.",
    surface=["train.py"],
    protected=["data/**"],
    parent=PARENT,
    files={"train.py": "LR = 0.1\n"},
    best=PARENT,
    own_recent=[PARENT],
    recent_failures=[CRASH],
    others_keeps=[TrialNote(3, "arch", "wider", "ok", 0.9, delta=0.02, decision="keep")],
    tried_from_parent=[TrialNote(6, "opt", "lr 0.05", "gate_miss", 0.8, delta=-0.11)],
)


def text(messages: list[dict[str, str]]) -> str:
    return "\n".join(message["content"] for message in messages)


def test_the_prompt_carries_task_rules_files_and_failures_with_their_logs() -> None:
    prompt = text(build_messages(DIGEST))

    for expected in (
        "You are opt,",
        "Reach 94% on CIFAR-10",
        "val_acc >= 0.94",
        "You may edit only: train.py",
        "data/**",
        "LR = 0.1",
        "trial 5 by arch: crash",
        "RuntimeError: shape mismatch",
        "improvement over parent +0.02",
        "lr 0.05",
        '"hypothesis"',
    ):
        assert expected in prompt, expected


def test_a_long_lineage_is_trimmed_to_the_bound_oldest_and_least_useful_first() -> None:
    failures = [
        TrialNote(n, "arch", f"idea {n}", "crash", None, log_tail="x" * 5000) for n in range(40)
    ]
    big = Digest(**{**DIGEST.__dict__, "recent_failures": failures})

    messages = build_messages(big, max_tokens=3000)
    prompt = text(messages)

    assert len(prompt) <= 3000 * CHARS_PER_TOKEN
    assert "idea 39" in prompt and "idea 0 " not in prompt
    assert "LR = 0.1" in prompt  # the files survive trimming
