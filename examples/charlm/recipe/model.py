"""Architecture: a character n-gram model, interpolated across orders.

The checkpoint (model.json) holds counts; only this code knows how they
combine into a distribution (the orders, the smoothing, the weights), so the
evaluator cannot apply it itself: it asks `predict.py` through the model
worker. Change anything here, as long as `log_probs` returns one finite
number per vocabulary symbol (log-probabilities or logits: the evaluator
normalises them itself).
"""

import json
import math
from collections import Counter, defaultdict

ORDER = 3  # the longest context, in characters, plus one
ALPHA = 0.5  # add-alpha smoothing of each order
WEIGHT = 0.6  # share of the longest order with data; the rest goes to shorter ones


class Model:
    def __init__(self, counts):
        self.counts = counts  # context string -> {char: count}, for contexts of 0..ORDER-1

    @classmethod
    def fit(cls, text):
        counts = defaultdict(Counter)
        for i, char in enumerate(text):
            for n in range(ORDER):
                if i - n >= 0:
                    counts[text[i - n : i]][char] += 1
        return cls({context: dict(seen) for context, seen in counts.items()})

    def log_probs(self, prefix, vocab):
        probs = [1.0 / len(vocab)] * len(vocab)
        for n in range(ORDER):
            context = prefix[len(prefix) - n :] if n else ""
            if n > len(prefix) or context not in self.counts:
                break
            seen = self.counts[context]
            total = sum(seen.values()) + ALPHA * len(vocab)
            order = [(seen.get(char, 0) + ALPHA) / total for char in vocab]
            probs = [WEIGHT * p + (1 - WEIGHT) * q for p, q in zip(order, probs)]
        return [math.log(p) for p in probs]

    def save(self, path):
        with open(path, "w") as f:
            json.dump(self.counts, f)

    @classmethod
    def load(cls, path):
        with open(path) as f:
            return cls(json.load(f))
