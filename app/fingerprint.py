"""Digests of the evaluator's files and the held-out data, to catch them changing.

The score is only comparable across trials if every trial was scored by the
same evaluator on the same data. The digest is taken when the search is
created and again before every evaluation; a mismatch fails the trial as
`evaluator_error` instead of ranking it against trials scored differently.
Files are hashed by content; a file whose size and mtime are unchanged since
this process last hashed it is not read again, so large held-out data costs
one read per worker, not one per trial.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

CHUNK_BYTES = 1 << 20
_CACHE: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> content sha256
_CACHE_LOCK = threading.Lock()


def directory_digest(*roots: Path | None) -> str:
    """One sha256 over every file under `roots` (names and contents), in a stable order."""
    digest = hashlib.sha256()
    for index, root in enumerate(roots):
        if root is None:
            continue
        for path in sorted(p for p in Path(root).rglob("*") if p.is_file()):
            digest.update(f"{index}:{path.relative_to(root).as_posix()}\0".encode())
            digest.update(_file_digest(path).encode())
    return digest.hexdigest()


def _file_digest(path: Path) -> str:
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK_BYTES):
            digest.update(chunk)
    value = digest.hexdigest()
    with _CACHE_LOCK:
        _CACHE[key] = value
    return value
