"""The tools an agent session works with: read, grep, edit a scratch copy, inspect, submit.

Every tool is served by Trialforge, never a shell: reads come from the
search's git store at the session's base commit, edits land in an in-memory
scratch copy, and the rules (surface, protected paths) are enforced when an
edit is made, with the reason returned so the model can correct itself.
Nothing here writes to the store or the lineage; `submit` only produces the
diff that the proposal service then commits like any other.

Every tool's output is capped (`OUTPUT_CHARS`) so one call cannot flood the
model's context. A tool call the model botched (arguments that are not JSON,
nest too deep or have the wrong types) is answered with the reason, never
raised. `grep` runs the model's pattern in RE2 (`app.domain.regex`), linear in
the text, and stops when the session's time is up (`out_of_time`, the
session's clock: nothing here reads one). The hypothesis and the edit a
model submits are capped as in single-shot replies (`app.domain.edits`).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.domain.edits import (
    HYPOTHESIS_MAX_CHARS,
    NOTES_MAX_CHARS,
    MalformedEdit,
    checked_edit,
    checked_hypothesis,
    checked_notes,
    compile_problems,
    file_diff,
    finite_delta,
    replace_once,
)
from app.domain.ideas import IdeaLookup, idea_fingerprint, nothing_tried, repeat_refusal
from app.domain.leaderboard import outcome
from app.domain.legality import FileChange, check_paths, glob_match
from app.domain.regex import compile_linear
from app.domain.spec import RepeatIdeas
from app.domain.states import KEPT
from app.errors import EditRejected, NotFound

OUTPUT_CHARS = 8000  # per tool call
READ_LINES = 400  # per read_file call
GREP_MATCHES = 100
GREP_CLOCK_LINES = 10_000  # lines grep reads between looks at the session's clock
LINEAGE_PAGE = 10
# Python types of the JSON types in the tools' schemas (bool is refused apart: it is an int).
_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "string": (str,),
    "integer": (int,),
    "number": (int, float),
}


def _never() -> bool:
    return False


class Repo(Protocol):
    def show_file(self, sha: str, path: str) -> str: ...

    def list_files(self, sha: str) -> list[str]: ...

    def diff(self, a_sha: str, b_sha: str) -> str: ...


@dataclass(frozen=True)
class TrialRef:
    """A recorded trial as the session's tools may show it."""

    number: int
    agent: str
    hypothesis: str
    label: str | None
    score: float | None
    delta: float | None
    commit: str | None
    parent_number: int | None
    reason: str = ""
    log_tail: str = ""
    decision: str | None = None
    expected_delta: float | None = None


@dataclass
class Submission:
    hypothesis: str
    diff: str
    parent_number: int
    expected_delta: float | None
    notes: str | None = None


@dataclass
class Workbench:
    repo: Repo
    trials: Mapping[int, TrialRef]  # by number
    base: TrialRef  # the trial the edit applies to; `rebase` changes it
    surface: Sequence[str]
    protected: Sequence[str]
    # The digest's lineage sections (leaderboard, top keeps, the best line and what was
    # tried on the best), rendered once: the prompt and the tools say the same.
    summary: str = ""
    scratch: dict[str, str] = field(default_factory=dict)  # path -> new content
    submission: Submission | None = None
    out_of_time: Callable[[], bool] = _never  # the session's deadline, asked by long tools
    tried: IdeaLookup = nothing_tried  # the store's answer to "was this idea tried?"
    repeat_ideas: RepeatIdeas = RepeatIdeas.REFUSE

    def call(self, name: str, arguments: str) -> str:
        """Run one tool call; a bad call is answered with its error, never raised."""
        tool = self._tools().get(name)
        if tool is None:
            return f"error: no tool {name[:100]!r}; the tools are {', '.join(self._tools())}"
        try:
            args = json.loads(arguments or "{}")
            if not isinstance(args, dict):
                raise ValueError("arguments must be a JSON object")
            _check_types(_PARAMETERS[name], args)
            output = tool(**args)
        except RecursionError:
            return f"error: bad arguments for {name}: JSON nested too deep"
        except (TypeError, ValueError, OverflowError) as error:
            return f"error: bad arguments for {name}: {error}"
        except NotFound as error:
            return f"error: {error.message}"
        return output if len(output) <= OUTPUT_CHARS else output[:OUTPUT_CHARS] + "\n[...cut]"

    def state(self) -> tuple[int, int]:
        """What the tools' answers depend on: the base and the edits made so far. The same
        call twice in one state is a loop; after an edit it is new work."""
        return self.base.number, hash(frozenset(self.scratch.items()))

    def _tools(self) -> dict[str, Callable[..., str]]:
        return {
            "list_files": self.list_files,
            "read_file": self.read_file,
            "grep": self.grep,
            "edit_file": self.edit_file,
            "lineage": self.lineage,
            "trial": self.trial,
            "diff": self.diff,
            "rebase": self.rebase,
            "check": self.check,
            "submit": self.submit,
        }

    def _commit(self) -> str:
        assert self.base.commit is not None  # only committed trials become bases
        return self.base.commit

    def _files(self) -> list[str]:
        return sorted(set(self.repo.list_files(self._commit())) | set(self.scratch))

    def _content(self, path: str) -> str:
        if path in self.scratch:
            return self.scratch[path]
        return self.repo.show_file(self._commit(), path)

    def list_files(self, prefix: str = "") -> str:
        files = [path for path in self._files() if path.startswith(prefix)]
        mine = [f"{p}{' (editable)' if self._editable(p) else ''}" for p in files]
        return "\n".join(mine) or f"no files under {prefix!r}"

    def read_file(self, path: str, start_line: int = 1, end_line: int | None = None) -> str:
        lines = self._content(path).splitlines()
        start = max(start_line, 1)
        end = min(end_line or len(lines), start + READ_LINES - 1, len(lines))
        shown = [f"{number:>5}  {lines[number - 1]}" for number in range(start, end + 1)]
        more = f"\n[lines {end + 1}-{len(lines)} not shown]" if end < len(lines) else ""
        return f"{path} ({len(lines)} lines)\n" + "\n".join(shown) + more

    def grep(self, pattern: str, path_glob: str = "**") -> str:
        try:
            regex = compile_linear(pattern)
        except ValueError as error:
            return f"error: not a regular expression RE2 accepts: {error}"
        matches: list[str] = []
        for path in self._files():
            if not glob_match(path_glob, path):
                continue
            for number, line in enumerate(self._content(path).splitlines(), start=1):
                if number % GREP_CLOCK_LINES == 1 and self.out_of_time():
                    shown = "\n".join(matches)
                    return f"{shown}\n[the session's time ran out during grep: submit now]"
                if regex.search(line):
                    matches.append(f"{path}:{number}: {line}")
                    if len(matches) >= GREP_MATCHES:
                        return "\n".join(matches) + "\n[more matches not shown]"
        return "\n".join(matches) or "no matches"

    def edit_file(self, path: str, search: str, replace: str) -> str:
        exists = path in self._files()
        change = FileChange(path, None, None, is_binary=False, is_delete=False, is_new=not exists)
        try:
            check_paths([change], self.protected, self.surface)
        except EditRejected as refusal:
            return f"refused: {refusal.reason}. Nothing was changed."
        try:
            edited = replace_once(path, self._content(path) if exists else None, search, replace)
        except MalformedEdit as refusal:
            return f"refused: {refusal}. Nothing was changed."
        self.scratch[path] = edited
        return f"edited {path}" if exists else f"created {path}"

    def lineage(self, page: int = 1) -> str:
        """Page 1: the summary the prompt opened with; later pages: the recorded trials,
        newest first, with failure excerpts. No page repeats another's rows."""
        page = max(page, 1)
        recent = sorted(self.trials, reverse=True)
        pages = 1 + -(-len(recent) // LINEAGE_PAGE)
        more = f"(more: lineage(page={page + 1}), of {pages})" if page < pages else ""
        if page == 1:
            summary = self.summary or "(no trial measured yet)"
            return f"{summary}\n{more}" if more else summary
        first = (page - 2) * LINEAGE_PAGE
        lines = [f"Recorded trials, page {page} of {pages} (newest first):"]
        for number in recent[first : first + LINEAGE_PAGE]:
            ref = self.trials[number]
            lines.append(_line(ref))
            if ref.label not in (None, "ok") and ref.log_tail:
                lines.append("    log: " + ref.log_tail[-300:].replace("\n", "\n    "))
        if len(lines) == 1:
            lines.append(f"  (no trials on this page; there are {pages} pages)")
        return "\n".join([*lines, more] if more else lines)

    def trial(self, number: int) -> str:
        ref = self._known(number)
        text = _line(ref) + (f"\nreason: {ref.reason}" if ref.reason else "")
        parent = self.trials.get(ref.parent_number) if ref.parent_number is not None else None
        if ref.commit and parent and parent.commit:
            text += "\ndiff against its parent:\n" + self.repo.diff(parent.commit, ref.commit)
        if ref.log_tail:
            text += "\nlog tail:\n" + ref.log_tail[-1500:]
        return text

    def diff(self, a: int, b: int) -> str:
        first, second = self._known(a), self._known(b)
        if not first.commit or not second.commit:
            return "error: only committed trials can be compared"
        return self.repo.diff(first.commit, second.commit) or "no difference"

    def rebase(self, number: int) -> str:
        target = self._known(number)
        if target.decision not in KEPT or target.commit is None:
            seen = outcome(target.label, target.decision)
            return f"refused: trial {number} is not a kept trial ({seen})"
        dropped = len(self.scratch)
        self.base, self.scratch = target, {}
        return f"now editing on trial {number}; {dropped} edited file(s) dropped"

    def check(self) -> str:
        """The check `submit` runs, and what the lineage knows of the idea."""
        if not self.scratch:
            return "nothing edited yet"
        problems = compile_problems(self.scratch)
        edited = ", ".join(sorted(self.scratch))
        verdict = ("problems:\n" + "\n".join(problems)) if problems else f"ok: {edited} compile"
        fingerprint = idea_fingerprint(self._diff())
        tried = self.tried(fingerprint) if fingerprint else None
        if tried is not None:
            refusal = repeat_refusal(tried, self.base.number, self.repeat_ideas)
            verdict += f"\nthis idea was already tried as {tried.describe()}" + (
                "; submit would refuse it" if refusal else "; it may run again on this parent"
            )
        return verdict

    def submit(
        self, hypothesis: str, expected_delta: float | None = None, notes: str | None = None
    ) -> str:
        diff = self._diff()
        try:
            checked = checked_hypothesis(hypothesis)
            checked_edit(diff)
            kept_notes = checked_notes(notes)
        except MalformedEdit as error:
            return f"refused: {error}. Nothing was submitted."
        problems = compile_problems(self.scratch)
        if problems:
            shown = "\n".join(problems)
            return f"refused: the check found problems; fix them and submit again:\n{shown}"
        fingerprint = idea_fingerprint(diff)
        refusal = (
            repeat_refusal(self.tried(fingerprint), self.base.number, self.repeat_ideas)
            if fingerprint
            else None
        )
        if refusal is not None:
            return f"refused: {refusal}. Try a different idea; nothing was submitted."
        expected = finite_delta(expected_delta)
        self.submission = Submission(checked, diff, self.base.number, expected, kept_notes)
        return "submitted" if diff else "submitted an empty edit"

    def _diff(self) -> str:
        return "".join(
            file_diff(path, self._original(path), content)
            for path, content in sorted(self.scratch.items())
            if content != self._original(path)
        )

    def _original(self, path: str) -> str | None:
        try:
            return self.repo.show_file(self._commit(), path)
        except NotFound:
            return None

    def _editable(self, path: str) -> bool:
        allowed = any(glob_match(pattern, path) for pattern in self.surface)
        return allowed and not any(glob_match(pattern, path) for pattern in self.protected)

    def _known(self, number: int) -> TrialRef:
        ref = self.trials.get(int(number))
        if ref is None:
            raise NotFound(f"no trial {number} in this search's visible lineage")
        return ref


def _check_types(parameters: Mapping[str, Any], args: Mapping[str, Any]) -> None:
    """Raise TypeError naming the first argument whose JSON type is not its schema's
    (null passes for an optional one: the tool then fails on it or takes its default)."""
    properties, required = parameters.get("properties", {}), parameters.get("required", [])
    for key, value in args.items():
        wanted = properties.get(key, {}).get("type")
        allowed = _JSON_TYPES.get(wanted)
        if allowed is None or (value is None and key not in required):
            continue
        if isinstance(value, bool) or not isinstance(value, allowed):
            raise TypeError(f"{key} must be a JSON {wanted}, not {type(value).__name__}")


def _line(ref: TrialRef) -> str:
    score = "-" if ref.score is None else f"{ref.score:.6g}"
    delta = "" if ref.delta is None else f" ({ref.delta:+.4g} over parent)"
    return (
        f"  trial {ref.number} by {ref.agent} on {ref.parent_number}: "
        f"{outcome(ref.label, ref.decision)}, "
        f"score {score}{delta}: {ref.hypothesis[:200]}"
    )


def _function(
    name: str, description: str, properties: dict[str, Any], required: list[str]
) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": properties, "required": required},
        },
    }


_INT = {"type": "integer"}
_STR = {"type": "string"}
TOOLS: list[dict[str, Any]] = [
    _function("list_files", "List the recipe's files (yours are marked editable).",
              {"prefix": _STR}, []),
    _function("read_file", "Read a file, with line numbers.",
              {"path": _STR, "start_line": _INT, "end_line": _INT}, ["path"]),
    _function("grep", "Search the recipe's files for a regular expression.",
              {"pattern": _STR, "path_glob": _STR}, ["pattern"]),
    _function("edit_file", "Replace one exact, unique snippet of a file in your scratch copy "
              "(an empty search creates a new file).",
              {"path": _STR, "search": _STR, "replace": _STR}, ["path", "search", "replace"]),
    _function("lineage", "The shared results. Page 1: leaderboard, top kept trials, the line "
              "to the best and what was tried on it; pages 2 on: every recorded trial, newest "
              "first, with outcomes and failure excerpts.", {"page": _INT}, []),
    _function("trial", "One recorded trial: hypothesis, outcome, diff, log tail.",
              {"number": _INT}, ["number"]),
    _function("diff", "The diff between two recorded trials.", {"a": _INT, "b": _INT},
              ["a", "b"]),
    _function("rebase", "Start over from another kept trial (drops your edits).",
              {"number": _INT}, ["number"]),
    _function("check", "Check your edited files (Python files must compile) and whether the "
              "idea was already tried.", {}, []),
    _function("submit", "Submit your edit as this trial; ends the session. It runs the check "
              "first and refuses an edit with problems or an idea already tried. hypothesis: "
              f"the mechanism and its expected effect (at most {HYPOTHESIS_MAX_CHARS} "
              "characters); expected_delta: the improvement over the parent you expect; "
              f"notes: optional caveats or what to try next (at most {NOTES_MAX_CHARS}).",
              {"hypothesis": _STR, "expected_delta": {"type": "number"}, "notes": _STR},
              ["hypothesis"]),
]  # fmt: skip
_PARAMETERS: dict[str, dict[str, Any]] = {
    tool["function"]["name"]: tool["function"]["parameters"] for tool in TOOLS
}
