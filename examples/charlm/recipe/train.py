"""Training: fits the model on data/train.txt and saves its checkpoint to the output dir."""

import os

import model

with open(os.path.join("data", "train.txt")) as f:
    text = f.read()
fitted = model.Model.fit(text)
path = os.path.join(os.environ.get("TRIALFORGE_OUTPUT", "."), "model.json")
fitted.save(path)
print(f"fitted {len(fitted.counts)} contexts on {len(text)} characters", flush=True)
