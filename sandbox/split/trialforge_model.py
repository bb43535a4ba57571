"""Split evaluation: the trial's model answers, the service's scorer asks and scores.

When the architecture is what the agents edit, only the trial's own code can
rebuild its checkpoint, and that code must never run beside the held-out
data. So evaluation runs in two containers: the *model worker* runs the
trial's code (its commit and /output read-only, no held-out data, no network)
and answers requests; the *scorer* (the evaluator's directory and the data)
never imports trial code: it sends inputs, receives outputs and computes the
metric itself. They share only a Unix socket on a private tmpfs.

The protocol, framework-neutral and the same both ways: frames of a 4-byte
big-endian length and that many bytes of UTF-8 JSON. A request is
`{"inputs": ...}`; the answer `{"outputs": ...}` or `{"error": "..."}`. The
scorer bounds every frame (`TRIALFORGE_MAX_FRAME_BYTES`, default 16 MiB) and
every answer's time; a worker that breaks either is the trial's failure.

This file is the helper of both sides (stdlib only, any Python 3.8+), mounted
read-only in both containers and on their PYTHONPATH:

- a recipe author writes `predict(inputs) -> outputs` (e.g. in predict.py);
  the worker command `python3 -m trialforge_model serve predict:predict`
  serves it;
- an evaluator author writes a scoring loop with `connect()`, and
  `autoregressive()` for scoring a sequence model on the prefix only: at each
  step every request holds one position of several disjoint streams, so no
  input in a request contains another's target, and a target reaches the
  model only after it was scored. `main()` turns a model's failure into the
  verdict `{"valid": false, "reason": ...}`: the trial's failure, not the
  evaluator's.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import struct
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

SOCKET_ENV = "TRIALFORGE_MODEL_SOCKET"
MAX_FRAME_ENV = "TRIALFORGE_MAX_FRAME_BYTES"
DEFAULT_MAX_FRAME = 16 * 1024 * 1024
_LENGTH = struct.Struct(">I")


class ModelFailed(Exception):
    """The model worker did not answer as the protocol says: the trial's failure."""


def _max_frame() -> int:
    return int(os.environ.get(MAX_FRAME_ENV, DEFAULT_MAX_FRAME))


def send(sock: socket.socket, message: Any) -> None:
    data = json.dumps(message, allow_nan=False).encode()
    if len(data) > _max_frame():
        raise ModelFailed(f"a frame of {len(data)} bytes is over the {_max_frame()}-byte cap")
    sock.sendall(_LENGTH.pack(len(data)) + data)


def receive(sock: socket.socket) -> Any:
    """One frame; ModelFailed when the peer closed, sent too much or not JSON."""
    (length,) = _LENGTH.unpack(_exactly(sock, _LENGTH.size))
    if length > _max_frame():
        raise ModelFailed(f"the model sent a frame of {length} bytes; the cap is {_max_frame()}")
    try:
        return json.loads(_exactly(sock, length))
    except ValueError as error:
        raise ModelFailed(f"the model sent a frame that is not JSON: {error}") from error


def _exactly(sock: socket.socket, count: int) -> bytes:
    chunks, left = [], count
    while left:
        try:
            chunk = sock.recv(min(left, 1 << 20))
        except socket.timeout as error:  # noqa: UP041 (an alias only from Python 3.10 on)
            raise ModelFailed("the model did not answer within its deadline") from error
        if not chunk:
            raise ModelFailed("the model worker closed the connection (it exited or crashed)")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# The worker's side ------------------------------------------------------------------------


def serve(predict: Callable[[Any], Any], path: str) -> None:
    """Answer one scorer's requests with `predict` until it disconnects."""
    if os.path.lexists(path):
        os.unlink(path)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(1)
    connection, _ = server.accept()
    with connection:
        while True:
            try:
                request = receive(connection)
            except ModelFailed:
                return  # the scorer is done
            try:
                answer = {"outputs": predict(request["inputs"])}
            except Exception as error:  # the model's failure goes back to the scorer
                answer = {"error": f"{type(error).__name__}: {error}"}
            send(connection, answer)


def _load(target: str) -> Callable[[Any], Any]:
    module, _, name = target.partition(":")
    sys.path.insert(0, os.getcwd())  # the recipe, at /work
    function: Callable[[Any], Any] = getattr(importlib.import_module(module), name or "predict")
    return function


# The scorer's side ------------------------------------------------------------------------


class Model:
    """A connection to the model worker; `predict` is one request and its answer."""

    def __init__(self, sock: socket.socket, deadline_s: float) -> None:
        self._sock, self.deadline_s = sock, deadline_s

    def predict(self, inputs: Any) -> Any:
        self._sock.settimeout(self.deadline_s)
        send(self._sock, {"inputs": inputs})
        answer = receive(self._sock)
        if not isinstance(answer, dict) or ("outputs" not in answer and "error" not in answer):
            raise ModelFailed("the model's answer is not {'outputs': ...} or {'error': ...}")
        if "error" in answer:
            raise ModelFailed(f"the model failed: {str(answer['error'])[:500]}")
        return answer["outputs"]

    def close(self) -> None:
        self._sock.close()


def connect(path: str = "", start_s: float = 120.0, deadline_s: float = 60.0) -> Model:
    """Connect to the worker, waiting up to `start_s` for it to listen (it loads its
    checkpoint first); each answer then has `deadline_s`."""
    path = path or os.environ[SOCKET_ENV]
    give_up = time.monotonic() + start_s
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(path)
            return Model(sock, deadline_s)
        except OSError as error:
            sock.close()
            if time.monotonic() > give_up:
                raise ModelFailed(f"the model worker never listened: {error}") from error
            time.sleep(0.05)


def autoregressive(
    sequence: Sequence[Any], streams: int, context: int
) -> Iterator[tuple[list[Sequence[Any]], list[Any]]]:
    """(prefixes, targets) per step of scoring `sequence` on the prefix only.

    The sequence is cut into `streams` disjoint pieces scored side by side:
    the request of step t holds, for each piece, at most `context` items
    before its position t, never anything after; that position's target is
    first shown as part of a prefix at step t + 1, once it was scored.
    """
    length = len(sequence) // streams
    starts = [k * length for k in range(streams)]
    for step in range(length):
        prefixes = [sequence[s + max(0, step - context) : s + step] for s in starts]
        yield prefixes, [sequence[s + step] for s in starts]


def main(score: Callable[[Model], dict[str, Any]]) -> None:
    """Run a scoring function against the worker and print its verdict (one JSON line);
    a model that fails the protocol gives `{"valid": false, "reason": ...}`."""
    try:
        model = connect()
        try:
            verdict = score(model)
        finally:
            model.close()
    except ModelFailed as failure:
        verdict = {"valid": False, "reason": str(failure)}
    print(json.dumps(verdict))  # noqa: T201 (the verdict is the evaluator's stdout)


if __name__ == "__main__":
    if len(sys.argv) != 3 or sys.argv[1] != "serve":
        sys.exit("usage: python3 -m trialforge_model serve MODULE:FUNCTION")
    serve(_load(sys.argv[2]), os.environ[SOCKET_ENV])
