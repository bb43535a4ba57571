"""Regular expressions that people and models write, run in time linear in the text.

Two kinds of pattern come from outside: a spec's knob patterns (run by the
API at submit and by the control arm on every proposal) and a session's
`grep` (written by the model). Python's `re` backtracks, so `(a+)+$` on a
long line runs for minutes; RE2 (google-re2) never backtracks and bounds its
memory, so no pattern can stall a request or a session. RE2 refuses the few
features that need backtracking (backreferences, lookaround) with a reason,
which is what the author sees.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol, cast

import re2

MAX_MEM_BYTES = 8 << 20  # RE2's own default, stated: a pattern needing more is refused


class Match(Protocol):
    def group(self, index: int = 0) -> str | None: ...

    def start(self, index: int = 0) -> int: ...

    def end(self, index: int = 0) -> int: ...


class Pattern(Protocol):
    @property
    def groups(self) -> int: ...

    def search(self, text: str) -> Match | None: ...

    def finditer(self, text: str) -> Iterator[Match]: ...


def compile_linear(pattern: str, *, multiline: bool = False) -> Pattern:
    """`pattern` compiled by RE2 (`^`/`$` at every line with `multiline`).

    Raises ValueError with RE2's reason when it cannot compile the pattern.
    """
    options = re2.Options()
    options.log_errors = False  # the reason goes to the caller, not to stderr
    options.max_mem = MAX_MEM_BYTES
    try:
        compiled = re2.compile(f"(?m){pattern}" if multiline else pattern, options)
    except re2.error as error:
        reason = error.args[0] if error.args else "invalid pattern"
        text = reason.decode(errors="replace") if isinstance(reason, bytes) else str(reason)
        raise ValueError(text) from error
    return cast(Pattern, compiled)
