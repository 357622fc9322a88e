"""Readers for the deployment files: docker-compose.yml (with Compose's variable interpolation),
.env.example, the Dockerfile and .dockerignore, plus the environment variables the code reads.

No Docker engine runs where the tests run, so these do by hand the parts of ``docker compose
config`` and ``docker build`` that can be checked statically.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
from dataclasses import dataclass, field
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
DOCKERFILE = ROOT / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
SOURCE_DIRS = ("app", "worker", "ml")

# The Compose Specification schema, as vendored (with its Apache-2.0 licence) by the
# check-jsonschema package for its `check-compose-spec` hook; installed by the dev extra.
SCHEMA_PACKAGE = "check_jsonschema.builtin_schemas.vendor"
SCHEMA_FILE = "compose-spec.json"

NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")


def compose_schema() -> dict[str, Any]:
    """The Compose Specification JSON schema, read from the installed package (no network)."""
    return json.loads(files(SCHEMA_PACKAGE).joinpath(SCHEMA_FILE).read_text(encoding="utf-8"))


# --- Compose interpolation --------------------------------------------------------------------


class InterpolationError(ValueError):
    """``${VAR:?message}`` with VAR unset (or empty), or a malformed ``${...}``."""


def interpolate(text: str, env: dict[str, str]) -> str:
    """``text`` with Compose's interpolation applied: ``$$``, ``$VAR``, ``${VAR}``, and
    ``${VAR<op>operand}`` for the operators ``:- - :? ? :+ +``, operands nested."""
    out: list[str] = []
    i = 0
    while i < len(text):
        if text[i] != "$":
            out.append(text[i])
            i += 1
        elif text.startswith("$$", i):
            out.append("$")
            i += 2
        elif text.startswith("${", i):
            value, i = _braced(text, i + 2, env)
            out.append(value)
        elif m := NAME.match(text, i + 1):
            out.append(env.get(m.group(), ""))
            i = m.end()
        else:
            out.append("$")
            i += 1
    return "".join(out)


def _braced(text: str, i: int, env: dict[str, str]) -> tuple[str, int]:
    m = NAME.match(text, i)
    if not m:
        raise InterpolationError(f"invalid interpolation format in {text!r}")
    name, i = m.group(), m.end()
    op = next((o for o in (":-", ":?", ":+", "-", "?", "+") if text.startswith(o, i)), "")
    i += len(op)
    end, depth = i, 0
    while end < len(text):  # the operand ends at the matching brace; ${...} may nest
        if text.startswith("$$", end):
            end += 2
            continue
        if text.startswith("${", end):
            depth, end = depth + 1, end + 2
            continue
        if text[end] == "}":
            if depth == 0:
                break
            depth -= 1
        end += 1
    else:
        raise InterpolationError(f"unclosed ${{ in {text!r}")
    operand = text[i:end]
    if not op and operand:
        raise InterpolationError(f"invalid interpolation format in {text!r}")
    is_set, non_empty = name in env, bool(env.get(name))
    present = non_empty if op.startswith(":") else is_set
    if op in ("", ":-", "-"):
        value = env.get(name, "") if (present or not op) else interpolate(operand, env)
    elif op in (":?", "?"):
        if not present:
            raise InterpolationError(f"{name}: {interpolate(operand, env)}")
        value = env[name]
    else:  # ":+" and "+"
        value = interpolate(operand, env) if present else ""
    return value, end + 1


def referenced_names(text: str) -> set[str]:
    """Every variable ``text`` refers to, defaults and nested operands included."""
    text = text.replace("$$", "")
    return set(re.findall(r"\$\{?([_a-zA-Z][_a-zA-Z0-9]*)", text))


def plain_defaults(text: str) -> list[tuple[str, str]]:
    """``(VAR, default)`` for each ``${VAR:-default}`` whose default holds no variable."""
    return re.findall(r"\$\{([_a-zA-Z][_a-zA-Z0-9]*):-([^}$]*)\}", text.replace("$$", ""))


def map_strings(node: Any, fn: Any) -> Any:
    """``node`` with ``fn`` applied to every string value (not to mapping keys)."""
    if isinstance(node, dict):
        return {k: map_strings(v, fn) for k, v in node.items()}
    if isinstance(node, list):
        return [map_strings(v, fn) for v in node]
    return fn(node) if isinstance(node, str) else node


def string_values(node: Any) -> list[str]:
    found: list[str] = []
    map_strings(node, lambda s: found.append(s) or s)
    return found


def load_compose_raw() -> dict[str, Any]:
    """docker-compose.yml as YAML gives it (anchors and ``<<`` merges resolved)."""
    doc = yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict), "docker-compose.yml is not a mapping"
    return doc


def load_compose(env: dict[str, str]) -> dict[str, Any]:
    """docker-compose.yml interpolated with ``env``, as ``docker compose config`` would."""
    return map_strings(load_compose_raw(), lambda s: interpolate(s, env))


# --- .env.example -------------------------------------------------------------------------------

ASSIGNMENT = re.compile(r"^(#\s*)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$")


@dataclass
class EnvEntry:
    name: str
    value: str
    active: bool  # False for a `# NAME=value` line (documented, left unset)
    comment: str | None  # the comment line just above, if it is one
    line: int


def parse_env_example(path: Path = ENV_EXAMPLE) -> list[EnvEntry]:
    """Every ``NAME=value`` and ``# NAME=value`` line of ``path``, in order."""
    entries: list[EnvEntry] = []
    previous = ""
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        if m := ASSIGNMENT.match(line):
            comment = previous[1:].strip() if previous.startswith("#") else None
            if ASSIGNMENT.match(previous) or previous.startswith("# ---"):
                comment = None  # another variable or a section heading, not a description
            entries.append(EnvEntry(m[2], m[3], m[1] is None, comment or None, number))
        previous = line
    return entries


def example_env(entries: list[EnvEntry]) -> dict[str, str]:
    """What Compose reads from a .env copied unchanged from .env.example."""
    return {e.name: e.value for e in entries if e.active}


# Stand-ins for the secrets .env.example leaves empty (the operator must choose them).
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "REDIS_PASSWORD": "redis-secret"}


def deploy_environment(entries: list[EnvEntry] | None = None) -> dict[str, str]:
    """What Compose reads after `cp .env.example .env` and setting the two passwords."""
    return {**example_env(parse_env_example() if entries is None else entries), **SECRETS}


# --- environment variables the code reads -------------------------------------------------------


@dataclass
class EnvReads:
    names: dict[str, list[str]] = field(default_factory=dict)  # name -> ["path:line", ...]
    dynamic: list[str] = field(default_factory=list)  # reads whose name is not a literal


def _is_environ(node: ast.expr) -> bool:
    return (isinstance(node, ast.Attribute) and node.attr == "environ") or (
        isinstance(node, ast.Name) and node.id == "environ"
    )


def code_env_reads(root: Path = ROOT, dirs: tuple[str, ...] = SOURCE_DIRS) -> EnvReads:
    """``os.getenv(X)``, ``os.environ.get(X)`` / ``.pop(X)``, ``os.environ[X]`` (read),
    ``X in os.environ`` and CLI options' ``envvar=X`` in every module under ``dirs``."""
    reads = EnvReads()
    for path in sorted(p for d in dirs for p in (root / d).rglob("*.py")):
        where = path.relative_to(root).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=where)):
            key: ast.expr | None = None
            if isinstance(node, ast.Call):
                f = node.func
                getenv = (isinstance(f, ast.Attribute) and f.attr == "getenv") or (
                    isinstance(f, ast.Name) and f.id == "getenv"
                )
                environ_get = (
                    isinstance(f, ast.Attribute)
                    and f.attr in ("get", "pop")
                    and _is_environ(f.value)
                )
                if (getenv or environ_get) and node.args:
                    key = node.args[0]
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                if _is_environ(node.value):
                    key = node.slice
            elif isinstance(node, ast.Compare) and any(
                isinstance(op, ast.In | ast.NotIn) for op in node.ops
            ):
                key = node.left if any(_is_environ(c) for c in node.comparators) else None
            keys = [key] if key is not None else []
            if isinstance(node, ast.Call):  # click/Typer options: envvar="NAME" or a list
                for kw in node.keywords:
                    if kw.arg == "envvar":
                        value = kw.value
                        keys += value.elts if isinstance(value, ast.List | ast.Tuple) else [value]
            for key in keys:
                at = f"{where}:{node.lineno}"
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    reads.names.setdefault(key.value, []).append(at)
                else:
                    reads.dynamic.append(at)
    return reads


def settings_env_names() -> dict[str, str]:
    """Environment variable -> field name, for every field of ``app.settings.Settings``."""
    from app.settings import Settings

    prefix = Settings.model_config.get("env_prefix", "")
    names = {}
    for name, info in Settings.model_fields.items():
        alias = info.validation_alias or info.alias
        env = alias if isinstance(alias, str) else f"{prefix}{name}"
        names[env.upper()] = name
    return names


# --- Dockerfile and .dockerignore ---------------------------------------------------------------


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[Instruction]

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def parse_dockerfile(path: Path = DOCKERFILE) -> tuple[list[Instruction], list[Stage]]:
    """Instructions before the first FROM (global ARGs), and the build stages."""
    logical: list[tuple[int, str]] = []
    pending, start = "", 0
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = raw.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if pending and stripped.startswith("#"):
            continue  # a comment inside a continued instruction
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        logical.append((start, pending + stripped))
        pending = ""
    assert not pending, "the Dockerfile ends inside a continued line"
    preamble: list[Instruction] = []
    stages: list[Stage] = []
    for number, text in logical:
        keyword, _, args = text.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(words[0], name, []))
        elif stages:
            stages[-1].instructions.append(instruction)
        else:
            preamble.append(instruction)
    return preamble, stages


def exec_form(args: str) -> list[str]:
    """The argv of an exec-form (JSON array) CMD/ENTRYPOINT/HEALTHCHECK CMD."""
    argv = json.loads(args)
    assert isinstance(argv, list) and all(isinstance(a, str) for a in argv), args
    return argv


def healthcheck_command(args: str) -> list[str]:
    """The argv of ``HEALTHCHECK [--options] CMD [...]``."""
    options, sep, command = args.partition("CMD ")
    assert sep, f"HEALTHCHECK without CMD: {args!r}"
    assert all(o.startswith("--") for o in shlex.split(options)), options
    return exec_form(command)


def copy_sources(instruction: Instruction) -> list[str]:
    """Sources of a COPY from the build context (empty for ``COPY --from=...``)."""
    words = shlex.split(instruction.args)
    if any(w.startswith("--from=") for w in words):
        return []
    words = [w for w in words if not w.startswith("--")]
    return words[:-1]


def dockerignore_excludes(relative: str, path: Path = DOCKERIGNORE) -> bool:
    """Whether .dockerignore keeps ``relative`` (a path in the repo) out of the build context.

    As Docker reads it: the patterns apply in order and the last match wins, ``!`` re-includes,
    a pattern matches a path or any folder above it, ``*`` stays within one path segment and
    ``**`` spans any number of them.
    """
    rules = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        rules.append((negate, _glob(line.removeprefix("!").strip("/"))))
    parts = relative.strip("/").split("/")
    candidates = ["/".join(parts[:depth]) for depth in range(1, len(parts) + 1)]
    excluded = False
    for negate, pattern in rules:
        if any(pattern.fullmatch(c) for c in candidates):
            excluded = not negate
    return excluded


def _glob(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)
