"""The digits evaluator: held-out accuracy of the saved model, and its size.

Owned by the service: it runs in its own container with the held-out images,
and reads the trial's output read-only. Prints one JSON object.
"""

import json
import os

import numpy as np

output = os.environ["TRIALFORGE_OUTPUT"]
path = os.path.join(output, "model.npz")
weights = np.load(path)
layers = sorted({int(name[1:]) for name in weights.files})
raw = np.loadtxt(os.path.join(os.environ["TRIALFORGE_DATA"], "heldout.csv"), delimiter=",")
x, y = raw[:, :-1] / 16.0, raw[:, -1].astype(int)
for n in layers:
    x = x @ weights[f"w{n}"] + weights[f"b{n}"]
    if n != layers[-1]:
        x = np.maximum(x, 0.0)
accuracy = float((x.argmax(axis=1) == y).mean())
print(json.dumps({
    "accuracy": accuracy,
    "artifact_bytes": os.path.getsize(path),
    "params": int(sum(weights[name].size for name in weights.files)),
}))
