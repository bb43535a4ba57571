"""A trial's log tail is bounded however much it prints, and ends where the trial ended.

Invariant: at most `capacity` bytes come back, notices included; the end of
the output (where the traceback is) is kept; a cut never starts mid-character.
"""

from __future__ import annotations

from sandbox.logtail import DROPPED_NOTICE, TailBuffer


def test_a_tail_that_fits_comes_back_whole_without_a_notice() -> None:
    tail = TailBuffer(capacity=100)
    tail.write(b"epoch 1\n")
    tail.write(b"epoch 2\n")

    assert tail.text() == "epoch 1\nepoch 2\n"


def test_only_the_last_bytes_are_kept_and_the_cut_is_announced() -> None:
    tail = TailBuffer(capacity=64)
    for step in range(10_000):
        tail.write(f"step {step}\n".encode())

    text = tail.text()

    assert text.startswith(DROPPED_NOTICE)
    assert text.endswith("step 9999\n")
    assert len(text.encode()) <= 64


def test_a_header_counts_against_the_capacity() -> None:
    tail = TailBuffer(capacity=64)
    tail.write(b"y" * 64)

    text = tail.text(header="[not isolated]\n")

    assert text.startswith("[not isolated]\n" + DROPPED_NOTICE)
    assert text.endswith("y")
    assert len(text.encode()) == 64


def test_a_cut_through_a_multibyte_character_drops_its_remainder() -> None:
    room = 5  # bytes left for output once the notice is in
    tail = TailBuffer(capacity=len(DROPPED_NOTICE) + room)
    tail.write(b"a" * len(DROPPED_NOTICE) + "ééé".encode())  # é is 2 bytes: cut inside the 1st

    assert tail.text() == DROPPED_NOTICE + "éé"
