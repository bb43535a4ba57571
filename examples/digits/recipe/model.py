"""Architecture: a small multilayer perceptron with ReLU between layers.

The evaluator reads the saved arrays w0, b0, w1, b1, ... in order and applies
ReLU between layers, so any depth and width works if saved that way.
"""

import numpy as np

HIDDEN = 32  # units per hidden layer
LAYERS = 1  # hidden layers


def init(rng, n_in=64, n_out=10):
    sizes = [n_in] + [HIDDEN] * LAYERS + [n_out]
    params = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        params.append(rng.normal(0.0, np.sqrt(2.0 / fan_in), (fan_in, fan_out)))
        params.append(np.zeros(fan_out))
    return params


def forward(params, x):
    """Logits, and each layer's input (for backpropagation)."""
    inputs = []
    for i in range(0, len(params), 2):
        inputs.append(x)
        x = x @ params[i] + params[i + 1]
        if i + 2 < len(params):
            x = np.maximum(x, 0.0)
    return x, inputs
