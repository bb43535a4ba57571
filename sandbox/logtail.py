"""Keeps only the end of a trial's output, in bounded memory.

A trial may print gigabytes; what the worker stores and what an agent reads
is the last `LOG_TAIL_BYTES`, which is where the traceback is. Runners feed
output through a `TailBuffer` chunk by chunk, so memory stays bounded while
the trial is still printing.
"""

from __future__ import annotations

import threading

LOG_TAIL_BYTES = 16 * 1024  # of UTF-8 output kept per run, notices included
DROPPED_NOTICE = "[trialforge: earlier output dropped]\n"
_UTF8_CONTINUATION_MASK = 0b1100_0000
_UTF8_CONTINUATION = 0b1000_0000


class TailBuffer:
    """The last `capacity` bytes written to it, and a count of those dropped.

    Safe to write from several threads (one pump per output stream).
    """

    def __init__(self, capacity: int = LOG_TAIL_BYTES) -> None:
        self.capacity = capacity
        self.dropped = 0
        self._tail = bytearray()
        self._lock = threading.Lock()

    def write(self, chunk: bytes) -> None:
        with self._lock:
            self._tail += chunk
            excess = len(self._tail) - self.capacity
            if excess > 0:
                del self._tail[:excess]
                self.dropped += excess

    def text(self, header: str = "") -> str:
        """`header`, a notice if output was dropped, then as much of the tail as fits.

        The whole string stays within `capacity` bytes as long as the output
        is valid UTF-8 (invalid bytes are shown as U+FFFD, 3 bytes each).
        """
        with self._lock:
            kept = bytes(self._tail)
        room = self.capacity - len(header.encode())
        if self.dropped or len(kept) > room:
            header += DROPPED_NOTICE
            room -= len(DROPPED_NOTICE.encode())
        return header + _decode_from_char_boundary(kept[max(len(kept) - room, 0) :])


def _decode_from_char_boundary(data: bytes) -> str:
    """Decode, skipping the partial UTF-8 character a byte-wise cut may start with."""
    start = 0
    while start < len(data) and data[start] & _UTF8_CONTINUATION_MASK == _UTF8_CONTINUATION:
        start += 1
    return data[start:].decode("utf-8", errors="replace")
