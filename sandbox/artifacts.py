"""Measures what a trial left in its output directory, from the outside.

The artifact budget is checked against this number, so the runner measures
it after the trial has stopped rather than trusting anything the trial says.
Apparent sizes are summed (a sparse file counts at its full length, as it
would once copied), symlinks count as links and are never followed out of
the directory, and an unreadable directory is an error rather than zero
bytes, so a trial cannot hide its output by `chmod 000`.
"""

from __future__ import annotations

import os
from pathlib import Path


def directory_bytes(root: Path) -> int:
    """Total apparent size in bytes of every file under `root`; raises OSError if unreadable."""
    total = 0
    for directory, _, files in os.walk(root, onerror=_raise):
        for name in files:
            total += os.lstat(os.path.join(directory, name)).st_size
    return total


def _raise(error: OSError) -> None:
    raise error
