"""The charlm scorer: bits per character of the trial's model on held-out text.

Owned by the service and split from the model: it never imports the trial's
code. It asks the model worker (the trial's predict.py) for a distribution
over the vocabulary after each prefix, one position of 16 disjoint streams
per request (so no prefix shows another's target, and a target reaches the
model only after it was scored), normalises what comes back itself and
scores the true next character. A model that answers out of protocol (wrong
shape, not finite, an error, too slow) is the trial's failure.
"""

import math
import os

from trialforge_model import autoregressive, main

VOCAB = "".join(chr(code) for code in range(32, 127)) + "\n"
STREAMS, CONTEXT = 16, 64


def score(model):
    with open(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout.txt")) as f:
        text = "".join(char if char in VOCAB else " " for char in f.read())
    index = {char: i for i, char in enumerate(VOCAB)}
    nats, count = 0.0, 0
    for prefixes, targets in autoregressive(text, STREAMS, CONTEXT):
        rows = model.predict({"prefixes": prefixes, "vocab": VOCAB})
        if not isinstance(rows, list) or len(rows) != len(prefixes):
            return {"valid": False, "reason": f"expected {len(prefixes)} distributions"}
        for row, target in zip(rows, targets):
            numbers = isinstance(row, list) and len(row) == len(VOCAB) and all(
                isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)
                for x in row
            )
            if not numbers:
                return {"valid": False, "reason": f"a distribution is not {len(VOCAB)} finite numbers"}
            top = max(row)
            normaliser = top + math.log(sum(math.exp(x - top) for x in row))
            nats += normaliser - row[index[target]]
            count += 1
    return {"bpc": nats / count / math.log(2), "chars": count}


main(score)
