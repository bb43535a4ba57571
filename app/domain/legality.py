"""Whether a proposed edit may become a trial commit, decided from the diff text alone.

Agents change a recipe through unified diffs. Before git sees one, this module
reads which files it creates, deletes, renames or re-modes and refuses edits
that would reach outside the recipe or tamper with what the evaluator trusts:
absolute or `..` paths, `.git/`, protected globs, symlinks, submodules, binary
blobs and paths outside the agent's surface. It is pure (no git, no I/O), so
the rules are testable on strings, and the git adapter runs the same
`check_paths` again on the tree git actually produced.

Decisions:
- A diff that does not parse is `patch_rejected` (the agent wrote a broken
  patch), never `illegal_edit` (the agent tried something forbidden); so is a
  diff that names no file.
- Hunks are read by their header counts, exactly as `git apply` reads them, so
  a removed line that starts with `-- ` is never mistaken for a file header.
- Globs are anchored at the repository root. `*` and `?` stay within one path
  segment, a `**` segment spans any number of directories, and a pattern that
  names a directory covers everything under it (`data` and `data/` protect
  `data/x.csv`). There are no character classes: `[` is literal.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from app.domain.states import Label
from app.errors import EditRejected

DEV_NULL = "/dev/null"

# Git modes an edit may leave a file with; the others get a named refusal.
_REGULAR_MODES = frozenset({"100644", "100755"})
_FORBIDDEN_MODES = {"120000": "a symlink", "160000": "a submodule (gitlink)"}
_MAX_LINK_HOPS = 40  # links followed in one lookup, as Linux allows; more is a loop

_HUNK_HEADER = re.compile(r"@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")
_BINARY_FILES = re.compile(r"Binary files (.+) and (.+) differ")
_GLOB_TOKEN = re.compile(r"\*+|\?|[^*?]+")
_OCTAL_ESCAPE = re.compile(r"[0-7]{3}")
# Single-character escapes in git's C-style quoted paths.
_C_ESCAPES = {"a": 7, "b": 8, "t": 9, "n": 10, "v": 11, "f": 12, "r": 13, '"': 34, "\\": 92}


@dataclass(frozen=True)
class FileChange:
    """One file a diff touches.

    `path` is where the file ends up (for a deletion, the file removed);
    `old_path` is where it came from when that differs (rename or copy), else
    None. `new_mode` is the git mode the diff gives the file, when it says.
    """

    path: str
    old_path: str | None
    new_mode: str | None
    is_binary: bool
    is_delete: bool
    is_new: bool

    @property
    def paths(self) -> tuple[str, ...]:
        """Every path the change reads from or writes to; each must be legal."""
        return (self.path,) if self.old_path is None else (self.old_path, self.path)


@dataclass(frozen=True)
class ParsedDiff:
    """The files a diff touches, and how `git apply` must read its paths.

    `strip` is the `-p` value that makes git read the same paths as `changes`:
    1 for the usual `a/` and `b/` prefixes, 0 when a model wrote bare paths.
    """

    changes: tuple[FileChange, ...]
    strip: int


@dataclass
class _Draft:
    """What the parser has seen of one file's section so far; names keep their prefixes."""

    line: int
    is_git: bool
    header: tuple[str, str] | None = None
    minus: str | None = None
    plus: str | None = None
    source: str | None = None
    target: str | None = None
    new_mode: str | None = None
    is_new: bool = False
    is_delete: bool = False
    is_binary: bool = False
    has_hunks: bool = False

    @property
    def in_git_header(self) -> bool:
        """True while extended headers (modes, renames, index) may still follow."""
        return self.is_git and self.minus is None and not self.has_hunks


def parse_diff(diff_text: str) -> ParsedDiff:
    """Read the file changes of a git-style or plain unified diff.

    Text outside file sections (prose, code fences) is skipped, as `git apply`
    skips it. Raises `EditRejected(patch_rejected)` naming the line when a
    hunk or a file name cannot be read.
    """
    lines = diff_text.split("\n")
    if lines[-1] == "":
        lines.pop()
    drafts: list[_Draft] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        lineno = index + 1
        if line.startswith("diff --git "):
            drafts.append(_Draft(lineno, is_git=True, header=_git_header_names(line[11:])))
        elif (
            line.startswith("--- ")
            and index + 1 < len(lines)
            and lines[index + 1].startswith("+++ ")
        ):
            if not (drafts and drafts[-1].in_git_header):
                drafts.append(_Draft(lineno, is_git=False))
            drafts[-1].minus = _required_name(line[4:], lineno)
            drafts[-1].plus = _required_name(lines[index + 1][4:], lineno + 1)
            index += 1
        elif line.startswith("@@ "):
            if not drafts:
                raise _unparsable(lineno, "a hunk comes before any file header")
            drafts[-1].has_hunks = True
            index = _skip_hunk(lines, index)
            continue
        elif drafts and drafts[-1].in_git_header:
            _read_extended_header(drafts[-1], line, lineno)
        elif match := _BINARY_FILES.fullmatch(line.rstrip()):
            drafts.append(_Draft(lineno, is_git=False, is_binary=True))
            drafts[-1].minus, drafts[-1].plus = match.group(1), match.group(2)
        index += 1
    strip = _strip_level(drafts)
    return ParsedDiff(tuple(_finish(draft, strip) for draft in drafts), strip)


def check_paths(
    changes: Sequence[FileChange], protected: Sequence[str], surface: Sequence[str] | None
) -> None:
    """Refuse the edit unless every change is one an agent may make.

    Raises `EditRejected(patch_rejected)` when there is no change at all and
    `EditRejected(illegal_edit)` listing every broken rule, each naming its
    path, so the agent learns all of them at once. `surface=None` means the
    agent may edit anywhere not protected.
    """
    if not changes:
        raise EditRejected(Label.PATCH_REJECTED, "the diff changes no files")
    problems = [issue for change in changes for issue in _violations(change, protected, surface)]
    if problems:
        raise EditRejected(Label.ILLEGAL_EDIT, "; ".join(dict.fromkeys(problems)))


def glob_match(pattern: str, path: str) -> bool:
    """Whether the repo-relative posix `path` is covered by `pattern` (see module docstring)."""
    return _compile_glob(pattern).fullmatch(path) is not None


def _violations(
    change: FileChange, protected: Sequence[str], surface: Sequence[str] | None
) -> Iterator[str]:
    for path in change.paths:
        problem = _path_problem(path)
        if problem is not None:
            yield f"{path!r} {problem}"
            continue
        normal = posixpath.normpath(path)
        rule = next((pattern for pattern in protected if glob_match(pattern, normal)), None)
        if rule is not None:
            yield f"{path!r} is protected (matches {rule!r})"
        if surface is not None and not any(glob_match(pattern, normal) for pattern in surface):
            allowed = ", ".join(repr(pattern) for pattern in surface) or "nothing"
            yield f"{path!r} is outside the agent's surface (it may edit {allowed})"
    mode = change.new_mode
    if mode in _FORBIDDEN_MODES:
        yield f"{change.path!r} would become {_FORBIDDEN_MODES[mode]} (mode {mode}), not allowed"
    elif mode is not None and mode not in _REGULAR_MODES:
        yield f"{change.path!r} has unsupported mode {mode}"
    if change.is_binary:
        yield f"{change.path!r} is a binary change; only text edits are allowed"


def symlink_problems(links: Mapping[str, str]) -> list[str]:
    """Why the recipe's symlinks (path -> target) may not be imported, one line each.

    A link that resolves outside the recipe (an absolute target, or `..`
    segments that climb above the root, through other links too) would hand
    a trial a host path, and the sandbox's export refuses it at every run; so
    it is refused at import, by name. A link that loops is refused too.
    """
    problems = []
    for path, target in sorted(links.items()):
        if _resolve(path.split("/")[:-1], target, links, hops=0) is None:
            problems.append(
                f"{path!r} is a symlink to {target!r}, which leads outside the recipe (or loops)"
            )
    return problems


def _resolve(
    start: list[str], target: str, links: Mapping[str, str], hops: int
) -> list[str] | None:
    """The segments `target` leads to from the directory `start`; None when it leaves the root."""
    if target.startswith("/") or hops > _MAX_LINK_HOPS:
        return None
    where = list(start)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not where:
                return None
            where.pop()
            continue
        where.append(part)
        inner = links.get("/".join(where))
        if inner is not None:
            followed = _resolve(where[:-1], inner, links, hops + 1)
            if followed is None:
                return None
            where = followed
    return where


def _path_problem(path: str) -> str | None:
    """Why `path` cannot name a file inside the recipe, or None.

    Without `..` segments and a leading `/`, a path cannot normalise to a place
    outside the repository, so those two checks cover every escape.
    """
    segments = path.split("/")
    if path.startswith("/"):
        return "is absolute; paths must be relative to the repository"
    if ".." in segments:
        return "contains a '..' segment, which could leave the repository"
    if posixpath.normpath(path) == ".":
        return "names the repository root, not a file"
    if any(segment.lower() == ".git" for segment in segments):
        return "is inside .git/, which no edit may touch"
    return None


def _strip_level(drafts: Sequence[_Draft]) -> int:
    """1 when every header name carries git's `a/`/`b/` prefix, else 0 (bare paths)."""
    names = [
        name
        for draft in drafts
        for name in (*(draft.header or ()), draft.minus, draft.plus)
        if name is not None and name != DEV_NULL
    ]
    return 1 if all(name.startswith(("a/", "b/")) for name in names) else 0


def _finish(draft: _Draft, strip: int) -> FileChange:
    header_old, header_new = draft.header or (None, None)
    old = draft.source or _stripped(draft.minus, strip) or _stripped(header_old, strip)
    new = draft.target or _stripped(draft.plus, strip) or _stripped(header_new, strip)
    path = new or old
    if path is None:
        raise _unparsable(draft.line, "cannot tell which file this section changes")
    return FileChange(
        path=path,
        old_path=old if old is not None and old != path else None,
        new_mode=draft.new_mode,
        is_binary=draft.is_binary,
        is_delete=draft.is_delete or draft.plus == DEV_NULL,
        is_new=draft.is_new or draft.minus == DEV_NULL,
    )


def _stripped(name: str | None, strip: int) -> str | None:
    if name is None or name == DEV_NULL:
        return None
    return name.split("/", 1)[1] if strip else name


def _read_extended_header(draft: _Draft, line: str, lineno: int) -> None:
    """Apply one git extended header line (modes, renames, copies, binary markers)."""
    text = line.rstrip("\r")
    if text.startswith("new file mode "):
        draft.is_new, draft.new_mode = True, text[14:].strip()
    elif text.startswith("deleted file mode "):
        draft.is_delete = True
    elif text.startswith("new mode "):
        draft.new_mode = text[9:].strip()
    elif text.startswith(("rename from ", "copy from ")):
        draft.source = _required_name(text.split(" from ", 1)[1], lineno)
    elif text.startswith(("rename to ", "copy to ")):
        draft.target = _required_name(text.split(" to ", 1)[1], lineno)
    elif text.startswith("index "):
        fields = text.split()
        if len(fields) == 3 and draft.new_mode is None:
            draft.new_mode = fields[2]
    elif text == "GIT binary patch" or _BINARY_FILES.fullmatch(text):
        draft.is_binary = True


def _skip_hunk(lines: Sequence[str], start: int) -> int:
    """Index of the first line after the hunk whose header is `lines[start]`."""
    header = _HUNK_HEADER.match(lines[start])
    if header is None:
        raise _unparsable(start + 1, "malformed hunk header")
    old, new = (int(count) if count is not None else 1 for count in header.groups())
    index = start + 1
    while old > 0 or new > 0:
        if index == len(lines):
            raise _unparsable(start + 1, f"hunk ends early ({old} old, {new} new lines missing)")
        tag = lines[index][:1]
        if tag in (" ", "", "\r"):  # an empty line is a context line whose space was trimmed
            old, new = old - 1, new - 1
        elif tag == "-":
            old -= 1
        elif tag == "+":
            new -= 1
        elif tag != "\\":
            raise _unparsable(index + 1, f"hunk ends early ({old} old, {new} new lines missing)")
        if old < 0 or new < 0:
            raise _unparsable(start + 1, "hunk has more lines than its header counts")
        index += 1
    while index < len(lines) and lines[index].startswith("\\"):  # "\ No newline at end of file"
        index += 1
    return index


def _git_header_names(rest: str) -> tuple[str, str] | None:
    """The two names of a `diff --git A B` line, or None when they cannot be told apart."""
    text = rest.rstrip("\r")
    if text.startswith('"'):
        first = _unquote(text)
        if first is None or not first[1].startswith(" "):
            return None
        second = _name_field(first[1][1:])
        return None if second is None else (first[0], second)
    if text.endswith('"'):
        split = text.find(' "')
        quoted = _unquote(text[split + 1 :]) if split >= 0 else None
        return None if quoted is None else (text[:split], quoted[0])
    for split, char in enumerate(text):
        if char != " ":
            continue
        old, new = text[:split], text[split + 1 :]
        if old == new or (old[:2], new[:2]) == ("a/", "b/") and old[2:] == new[2:]:
            return old, new
    return None


def _required_name(field: str, lineno: int) -> str:
    name = _name_field(field)
    if name is None:
        raise _unparsable(lineno, "unreadable file name")
    return name


def _name_field(field: str) -> str | None:
    """A file name as git writes it after `---`, `+++`, `rename from`...: quoted or up to a tab."""
    if field.startswith('"'):
        quoted = _unquote(field)
        return None if quoted is None else quoted[0]
    name = field.split("\t", 1)[0].rstrip()
    return name or None


def _unquote(text: str) -> tuple[str, str] | None:
    """Decode git's C-style quoted name at the start of `text`; return it and what follows."""
    out = bytearray()
    index = 1
    while index < len(text):
        char = text[index]
        if char == '"':
            return out.decode("utf-8", "surrogateescape"), text[index + 1 :]
        if char != "\\":
            out.extend(char.encode("utf-8", "surrogateescape"))
            index += 1
        elif text[index + 1 : index + 2] in _C_ESCAPES:
            out.append(_C_ESCAPES[text[index + 1]])
            index += 2
        elif _OCTAL_ESCAPE.fullmatch(text[index + 1 : index + 4]):
            out.append(int(text[index + 1 : index + 4], 8))
            index += 4
        else:
            return None
    return None


def _unparsable(lineno: int, what: str) -> EditRejected:
    return EditRejected(Label.PATCH_REJECTED, f"the diff does not parse at line {lineno}: {what}")


@lru_cache(maxsize=1024)
def _compile_glob(pattern: str) -> re.Pattern[str]:
    segments = [segment for segment in pattern.split("/") if segment not in ("", ".")]
    parts: list[str] = []
    for position, segment in enumerate(segments):
        last = position == len(segments) - 1
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
        else:
            parts.append(_translate_segment(segment) + ("" if last else "/"))
    if not parts:
        return re.compile(r"(?!)")  # an empty pattern covers nothing
    return re.compile("".join(parts) + "(?:/.*)?", re.DOTALL)


def _translate_segment(segment: str) -> str:
    out = []
    for token in _GLOB_TOKEN.findall(segment):
        if token.startswith("*"):
            out.append("[^/]*")
        elif token == "?":
            out.append("[^/]")
        else:
            out.append(re.escape(token))
    return "".join(out)
