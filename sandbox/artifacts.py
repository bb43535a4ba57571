"""What a trial left in its output directory, measured and made safe from the outside.

The artifact budget is checked against `directory_bytes`, measured after the
trial has stopped rather than trusting anything the trial says. Apparent
sizes are summed (a sparse file counts at its full length, as it would once
copied), and an unreadable directory is an error rather than zero bytes, so a
trial cannot hide its output by `chmod 000`.

Only regular files and directories leave the sandbox. A symlink planted in
/output (to the held-out data, the evaluator, `/`) would be followed by
whatever reads it next, the evaluator's container first; a FIFO would block
it, a device open one. So before anything reads the output, `scrub` removes
every link, FIFO, socket and device from a directory, and
`extract_archive` (the capped output, copied out of its volume) never
writes one; both say what they left out, for the trial's record.
"""

from __future__ import annotations

import io
import os
import shutil
import stat
import tarfile
from collections.abc import Iterable, Iterator
from pathlib import Path

NOTICE_ITEMS = 20  # removed entries named in the log; the rest are counted

_KINDS = {
    stat.S_IFLNK: "symlink",
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "character device",
    stat.S_IFBLK: "block device",
}


def directory_bytes(root: Path) -> int:
    """Total apparent size in bytes of every file under `root`; raises OSError if unreadable."""
    total = 0
    for directory, _, files in os.walk(root, onerror=_raise):
        for name in files:
            total += os.lstat(os.path.join(directory, name)).st_size
    return total


def scrub(root: Path) -> list[str]:
    """Remove everything under `root` that is not a regular file or a directory (never
    following a link); what was removed, e.g. "symlink model.npz -> /data/heldout.csv"."""
    removed = []
    for directory, dirs, files in os.walk(root, onerror=_raise):  # never follows links
        for name in sorted(dirs + files):
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
                continue
            kind = _KINDS.get(stat.S_IFMT(mode), "special file")
            shown = os.path.relpath(path, root)
            if stat.S_ISLNK(mode):
                shown += f" -> {os.readlink(path)}"
            os.unlink(path)
            removed.append(f"{kind} {shown}")
        dirs[:] = [d for d in dirs if os.path.isdir(os.path.join(directory, d))]
    return removed


def extract_archive(chunks: Iterable[bytes], into: Path, prefix: str) -> list[str]:
    """Unpack a tar stream (Docker's copy of a directory named `prefix`) into `into`, regular
    files and directories only, with plain modes; what was left out. A name that would land
    outside `into` is left out too."""
    left_out: list[str] = []
    root = into.resolve()
    with tarfile.open(fileobj=_Stream(iter(chunks)), mode="r|") as archive:
        for member in archive:
            name = member.name.removeprefix(prefix).lstrip("/")
            target = (root / name).resolve()
            if not name or target == root:
                continue  # the directory itself
            if not target.is_relative_to(root):
                left_out.append(f"a name outside the output {member.name}")
            elif member.isdir():
                target.mkdir(mode=0o755, parents=True, exist_ok=True)
            elif member.isreg():
                target.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
                source = archive.extractfile(member)
                assert source is not None  # a regular member has a body
                with source, target.open("wb") as copy:
                    shutil.copyfileobj(source, copy)
            else:
                left_out.append(_described(member))
    return left_out


def _described(member: tarfile.TarInfo) -> str:
    kind = (
        "symlink" if member.issym() else "hard link" if member.islnk()
        else "fifo" if member.isfifo() else "device" if member.isdev()
        else "special file"
    )  # fmt: skip
    target = f" -> {member.linkname}" if member.issym() or member.islnk() else ""
    return f"{kind} {member.name.split('/', 1)[-1]}{target}"


class _Stream(io.RawIOBase):
    """A readable file over an iterator of byte chunks (the docker SDK's archive stream)."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks, self._pending = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._pending:
            try:
                self._pending = next(self._chunks)
            except StopIteration:
                return 0
        count = min(len(buffer), len(self._pending))
        buffer[:count], self._pending = self._pending[:count], self._pending[count:]
        return count


def removed_notice(removed: list[str]) -> str:
    """The line a trial's log gets for what was taken out of its output, or nothing."""
    if not removed:
        return ""
    more = f"; and {len(removed) - NOTICE_ITEMS} more" if len(removed) > NOTICE_ITEMS else ""
    shown = "; ".join(removed[:NOTICE_ITEMS]) + more
    return f"\n[trialforge: removed from /output before anything read it: {shown}]\n"


def _raise(error: OSError) -> None:
    raise error
