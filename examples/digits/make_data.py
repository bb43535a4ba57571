"""Derive the digits data files from the copy that ships inside scikit-learn.

The 8x8 handwritten digits (1,797 images, UCI ML hand-written digits, as
bundled in `sklearn/datasets/data/digits.csv.gz`) are split once, with a
fixed seed, into the recipe's training file and the evaluator's held-out
file. The outputs are committed; rerun only to regenerate them:

    pip install scikit-learn && python examples/digits/make_data.py
"""

from __future__ import annotations

import gzip
import random
from importlib import resources
from pathlib import Path

HERE = Path(__file__).parent
HELD_OUT = 360  # images the evaluator keeps; the agents never see them
SEED = 20261128


def main() -> None:
    source = resources.files("sklearn.datasets") / "data" / "digits.csv.gz"
    rows = gzip.decompress(source.read_bytes()).decode().strip().splitlines()
    random.Random(SEED).shuffle(rows)
    (HERE / "heldout" / "heldout.csv").write_text("\n".join(rows[:HELD_OUT]) + "\n")
    (HERE / "recipe" / "data" / "train.csv").write_text("\n".join(rows[HELD_OUT:]) + "\n")


if __name__ == "__main__":
    main()
