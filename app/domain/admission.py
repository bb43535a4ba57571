"""Whether a spec can run on its recipe and on this server, decided before anything is stored.

`app.domain.spec` checks what a spec says on its own. What it says about the
recipe (its surfaces, knobs and commands) and about the server (model
endpoints, lent keys) can only be checked once the recipe is imported, and a
spec that fails here would only burn its budget: every trial `illegal_edit`,
`patch_rejected` or `infra_error`. The import service runs `admit` on the
imported tree and refuses the search, naming each field, when anything is
certainly wrong; what cannot be known (a command on the image's PATH) passes
and says it was not checked. Every check, passed or not, is reported, so the
caller sees what was verified.

Pure: the recipe comes in as its file modes and a reader, the server as its
endpoint policy and a test for which lent keys are set.
"""

from __future__ import annotations

import posixpath
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from app.domain.edits import MalformedEdit
from app.domain.endpoints import EndpointPolicy, NoEndpoint, endpoint_for
from app.domain.knobs import locate
from app.domain.legality import FileChange, check_paths, glob_match
from app.domain.roster import AgentKind, AgentSpec, Knob
from app.domain.spec import SearchSpec
from app.errors import EditRejected

EXECUTABLE, SYMLINK = "100755", "120000"  # git's modes of an executable file and a symlink
SHOWN_FILES = 8  # recipe files named in a refusal, as a hint
_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")  # `SEED=1 ./run.sh`: not the program
_PLAIN_PATH = re.compile(r"^[\w.+-]+(?:/[\w.+-]+)*$")  # no shell syntax left in the word


@dataclass(frozen=True)
class Check:
    """One thing verified (or refused) about a spec, named by its dotted field."""

    field: str
    message: str


@dataclass(frozen=True)
class RecipeTree:
    """The imported recipe as the checks need it."""

    modes: Mapping[str, str]  # path -> git mode, for every file
    read: Callable[[str], str | None]  # a file's text, None when there is none


@dataclass
class Admission:
    passed: list[Check] = field(default_factory=list)
    refused: list[Check] = field(default_factory=list)


def admit(
    spec: SearchSpec,
    tree: RecipeTree,
    policy: EndpointPolicy,
    key_is_set: Callable[[str], bool],
) -> Admission:
    """Every recipe and server check of `spec`; refused entries name the field to fix."""
    result = Admission()
    for index, agent in enumerate(spec.agents):
        _surface(result, f"agents.{index}", agent, spec.evaluator.protected, tree)
        if agent.kind is AgentKind.LLM:
            _endpoint(result, f"agents.{index}", agent, policy, key_is_set)
    _command(result, "run", spec.run, tree)
    if spec.preflight is not None:
        _command(result, "preflight.command", spec.preflight.command, tree)
    return result


def _surface(
    result: Admission, where: str, agent: AgentSpec, protected: list[str], tree: RecipeTree
) -> None:
    files = sorted(tree.modes)
    matched_all = True
    for index, glob in enumerate(agent.surface.paths):
        count = sum(1 for path in files if glob_match(glob, path))
        if count:
            result.passed.append(
                Check(f"{where}.surface.paths.{index}", f"{glob!r} matches {count} file(s)")
            )
            continue
        matched_all = False
        result.refused.append(
            Check(
                f"{where}.surface.paths.{index}",
                f"{glob!r} matches no file of the recipe (it has {_some(files)}); "
                "list files the agent is to create under surface.new_files",
            )
        )
    editable = [path for path in files if _edit_problem(agent, protected, path) is None]
    if matched_all and not editable and not agent.surface.new_files:
        result.refused.append(
            Check(
                f"{where}.surface",
                f"agent {agent.name!r} could edit no file: every file its surface matches is "
                f"protected by evaluator.protected ({', '.join(protected)})",
            )
        )
    for index, knob in enumerate(agent.knobs):
        _knob(result, f"{where}.knobs.{index}", agent, knob, protected, tree)


def _knob(
    result: Admission,
    where: str,
    agent: AgentSpec,
    knob: Knob,
    protected: list[str],
    tree: RecipeTree,
) -> None:
    content = tree.read(knob.file) if knob.file in tree.modes else None
    if content is None:
        result.refused.append(Check(f"{where}.file", f"no file {knob.file!r} in the recipe"))
        return
    problem = _edit_problem(agent, protected, knob.file)
    if problem is not None:
        refusal = f"agent {agent.name!r} may not edit it: {problem}"
        result.refused.append(Check(f"{where}.file", refusal))
        return
    try:
        _, value = locate(knob, content)
    except MalformedEdit as error:
        result.refused.append(Check(f"{where}.pattern", str(error)))
        return
    result.passed.append(
        Check(where, f"knob {knob.name}: its pattern matches once in {knob.file} (now {value})")
    )


def _edit_problem(agent: AgentSpec, protected: list[str], path: str) -> str | None:
    """Why `agent` may not edit the recipe file `path` (the legality rules), or None."""
    change = FileChange(path, None, None, is_binary=False, is_delete=False, is_new=False)
    try:
        check_paths([change], protected, agent.surface.editable)
    except EditRejected as rejection:
        return rejection.reason
    return None


def _command(result: Admission, where: str, command: str, tree: RecipeTree) -> None:
    """The program a command starts, when it names a recipe file, must be one and executable.

    Only a plain relative path (`./train.sh`, `scripts/run`) is checked: the
    command runs in /work, the recipe's root. A bare name (`python3`) comes
    from the image's PATH and anything with shell syntax is left to the shell.
    """
    program = _program(command)
    if program is None or "/" not in program or not _PLAIN_PATH.match(program):
        shown = f"{program!r} is" if program else "its program is"
        result.passed.append(Check(where, f"{shown} taken from the image (not checked)"))
        return
    path = posixpath.normpath(program)
    mode = tree.modes.get(path)
    if path.startswith("../"):
        result.passed.append(Check(where, f"{program!r} is outside the recipe (not checked)"))
    elif mode is None:
        kind = "a directory" if any(f.startswith(path + "/") for f in tree.modes) else "not a file"
        result.refused.append(
            Check(where, f"{program!r} is {kind} of the recipe (the command runs in /work)")
        )
    elif mode not in (EXECUTABLE, SYMLINK):
        result.refused.append(
            Check(
                where,
                f"{program!r} is not executable in the recipe (mode {mode}): run it with its "
                f"interpreter (`sh {program}`) or commit it with mode 755",
            )
        )
    else:
        result.passed.append(Check(where, f"{program!r} is an executable file of the recipe"))


def _program(command: str) -> str | None:
    """The first word of a shell command that is not a variable assignment, when it parses."""
    try:
        words = shlex.split(command, comments=True)
    except ValueError:
        return None  # unbalanced quotes: the shell will say so better than we can
    return next((word for word in words if not _ASSIGNMENT.match(word)), None)


def _endpoint(
    result: Admission,
    where: str,
    agent: AgentSpec,
    policy: EndpointPolicy,
    key_is_set: Callable[[str], bool],
) -> None:
    try:
        endpoint = endpoint_for(agent, policy)
    except NoEndpoint as refusal:
        result.refused.append(Check(f"{where}.{refusal.field}", refusal.message))
        return
    if endpoint.key_env is not None and not key_is_set(endpoint.key_env):
        result.refused.append(
            Check(f"{where}.api_key_env", f"{endpoint.key_env} is not set on this server")
        )
        return
    if endpoint.key_env is not None:
        key = f"the key in {endpoint.key_env}"
    else:
        key = "the operator's key" if endpoint.operator else "no key"
    result.passed.append(Check(f"{where}.base_url", f"calls {endpoint.base_url} with {key}"))


def _some(files: list[str]) -> str:
    shown = ", ".join(files[:SHOWN_FILES])
    more = f" and {len(files) - SHOWN_FILES} more" if len(files) > SHOWN_FILES else ""
    return (shown + more) or "no files"
