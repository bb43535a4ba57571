"""The model worker's entry point: the evaluator's requests, answered by this recipe's model.

Run by `python3 -m trialforge_model serve predict:predict` in the trial's
sandbox, with the checkpoint in TRIALFORGE_OUTPUT (read-only) and no
held-out data. A request is {"prefixes": [...], "vocab": "..."}; the answer
is one list of len(vocab) numbers per prefix.
"""

import os

import model

_loaded = None


def predict(inputs):
    global _loaded
    if _loaded is None:
        _loaded = model.Model.load(os.path.join(os.environ["TRIALFORGE_OUTPUT"], "model.json"))
    return [_loaded.log_probs(prefix, inputs["vocab"]) for prefix in inputs["prefixes"]]
