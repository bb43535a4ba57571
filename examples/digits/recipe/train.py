"""Optimizer and schedule: trains the model and saves its weights to the output dir."""

import os

import numpy as np

import data
import model

LR = 0.02
EPOCHS = 8
BATCH = 64
WEIGHT_DECAY = 0.0
SEED = 0


def main():
    rng = np.random.default_rng(SEED)
    x, y = data.load()
    params = model.init(rng)
    for epoch in range(EPOCHS):
        order = rng.permutation(len(x))
        total = 0.0
        for start in range(0, len(x), BATCH):
            batch = order[start : start + BATCH]
            xb, yb = data.augment(x[batch], rng), y[batch]
            logits, inputs = model.forward(params, xb)
            logits -= logits.max(axis=1, keepdims=True)
            probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
            total -= np.log(probs[np.arange(len(yb)), yb] + 1e-12).sum()
            grad = probs
            grad[np.arange(len(yb)), yb] -= 1.0
            grad /= len(yb)
            for i in range(len(params) - 2, -1, -2):
                w_grad = inputs[i // 2].T @ grad + WEIGHT_DECAY * params[i]
                b_grad = grad.sum(axis=0)
                if i > 0:
                    grad = (grad @ params[i].T) * (inputs[i // 2] > 0)
                params[i] -= LR * w_grad
                params[i + 1] -= LR * b_grad
        print(f"epoch {epoch + 1}/{EPOCHS} loss {total / len(x):.4f}", flush=True)
    out = os.environ.get("TRIALFORGE_OUTPUT", ".")
    np.savez(os.path.join(out, "model.npz"),
             **{f"{'w' if i % 2 == 0 else 'b'}{i // 2}": p.astype(np.float32)
                for i, p in enumerate(params)})


if __name__ == "__main__":
    main()
