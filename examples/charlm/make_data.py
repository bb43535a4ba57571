"""Derive the text of the charlm example from docstrings of Python's standard library.

Real English prose about programs (PSF-licensed, shipped with every Python):
the docstrings of a fixed list of modules and their public members, reduced
to printable ASCII and split once into the recipe's training text and the
evaluator's held-out text (the last part, never shown to agents). The outputs
are committed; rerun only to regenerate them:

    python examples/charlm/make_data.py
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

HERE = Path(__file__).parent
MODULES = ["textwrap", "json", "argparse", "collections", "functools", "itertools", "string",
           "random", "statistics", "pathlib", "shutil", "tempfile", "difflib", "csv", "heapq",
           "bisect", "fractions", "decimal", "calendar", "datetime"]  # fmt: skip
TRAIN_CHARS, HELD_OUT_CHARS = 60_000, 8_000
PRINTABLE = {chr(code) for code in range(32, 127)} | {"\n"}


def docstrings() -> str:
    parts = []
    for name in MODULES:
        module = importlib.import_module(name)
        parts.append(inspect.getdoc(module) or "")
        for member_name, member in sorted(vars(module).items()):
            if not member_name.startswith("_") and (inspect.isclass(member) or callable(member)):
                parts.append(inspect.getdoc(member) or "")
    text = "\n\n".join(part for part in parts if part)
    return "".join(char if char in PRINTABLE else " " for char in text)


def main() -> None:
    text = docstrings()
    assert len(text) >= TRAIN_CHARS + HELD_OUT_CHARS, len(text)
    (HERE / "recipe" / "data" / "train.txt").write_text(text[:TRAIN_CHARS])
    (HERE / "heldout" / "heldout.txt").write_text(text[TRAIN_CHARS : TRAIN_CHARS + HELD_OUT_CHARS])


if __name__ == "__main__":
    main()
