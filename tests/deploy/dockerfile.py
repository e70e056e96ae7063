"""Read the Dockerfile and run its build stage on this machine, without Docker.

No registry is reachable here, so the image cannot be built. Instead the build
stage's steps run for real in a scratch directory: COPY copies from the build
context as filtered by .dockerignore, RUN runs through /bin/sh with the stage's
ARG and ENV values. Only the instructions the Dockerfile uses are understood;
anything else fails loudly, so the Dockerfile stays within what this covers.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

# The PATH of the official python images (and of Docker's default).
DOCKER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

_VAR = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def expand(text: str, values: Mapping[str, str]) -> str:
    """Docker's `$NAME` / `${NAME}` substitution; an unset name becomes empty, as in Docker."""
    return _VAR.sub(lambda m: values.get(m.group(1) or m.group(2), ""), text)


@dataclass
class Instruction:
    keyword: str
    args: str
    line: int

    def exec_form(self) -> list[str] | None:
        """The JSON array of an exec-form instruction, or None for the shell form."""
        if not self.args.startswith("["):
            return None
        value = json.loads(self.args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value


@dataclass
class Stage:
    name: str | None
    base: str
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


@dataclass
class Dockerfile:
    global_args: dict[str, str]
    stages: list[Stage]

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    @property
    def final(self) -> Stage:
        return self.stages[-1]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """Instructions with their continuation lines joined; comment lines dropped."""
    out: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        out.append((start, " ".join(pending)))
        pending = []
    assert not pending, "the Dockerfile ends inside a continuation"
    return out


def parse(text: str, build_args: Mapping[str, str] | None = None) -> Dockerfile:
    """Stages with ARG defaults replaced by `build_args` (like `docker build --build-arg`)."""
    build_args = dict(build_args or {})
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line, logical in _logical_lines(text):
        keyword, _, args = logical.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip(), line)
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.args.partition("=")
            global_args[name] = build_args.get(name, default)
        elif instruction.keyword == "FROM":
            words = expand(instruction.args, global_args).split()
            assert len(words) in (1, 3), f"line {line}: FROM image [AS name] only"
            alias = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            stages.append(Stage(alias, words[0]))
        else:
            assert stages, f"line {line}: {instruction.keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return Dockerfile(global_args, stages)


def stage_values(
    dockerfile: Dockerfile,
    stage: Stage,
    build_args: Mapping[str, str],
    base_env: Mapping[str, str],
) -> dict[str, str]:
    """The ARG and ENV values in force at the end of `stage`, over `base_env`."""
    values = dict(base_env)
    for instruction in stage.instructions:
        values = apply_arg_or_env(dockerfile, instruction, build_args, values)
    return values


def apply_arg_or_env(
    dockerfile: Dockerfile,
    instruction: Instruction,
    build_args: Mapping[str, str],
    values: Mapping[str, str],
) -> dict[str, str]:
    """`values` after one ARG or ENV instruction (unchanged by any other)."""
    updated = dict(values)
    if instruction.keyword == "ARG":
        name, has_default, default = instruction.args.partition("=")
        fallback = default if has_default else dockerfile.global_args.get(name, "")
        updated[name] = build_args.get(name, fallback)
    elif instruction.keyword == "ENV":
        updated.update(parse_env(instruction, values))
    return updated


def parse_env(instruction: Instruction, values: Mapping[str, str]) -> dict[str, str]:
    """`ENV A=1 B=$A`: every substitution sees the values from before this instruction."""
    pairs: dict[str, str] = {}
    for word in shlex.split(instruction.args):
        name, eq, value = word.partition("=")
        assert eq, f"line {instruction.line}: use ENV NAME=value"
        pairs[name] = expand(value, values)
    return pairs


class DockerIgnore:
    """.dockerignore matching: the last pattern that matches a path or a parent wins."""

    def __init__(self, text: str) -> None:
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for raw in text.splitlines():
            pattern = raw.strip()
            if not pattern or pattern.startswith("#"):
                continue
            include = pattern.startswith("!")
            pattern = pattern.lstrip("!").strip("/")
            regex = re.escape(pattern).replace(r"\*\*", ".*").replace(r"\*", "[^/]*")
            self.rules.append((include, re.compile(regex.replace(r"\?", "[^/]") + r"\Z")))

    def excluded(self, relative: str) -> bool:
        parts = relative.strip("/").split("/")
        prefixes = ["/".join(parts[: n + 1]) for n in range(len(parts))]
        result = False
        for include, regex in self.rules:
            if any(regex.match(p) for p in prefixes):
                result = not include
        return result


@dataclass
class BuildStage:
    """Runs one stage's ARG/ENV/WORKDIR/COPY/RUN steps; container paths live under `root`."""

    dockerfile: Dockerfile
    stage: Stage
    context: Path
    root: Path
    build_args: Mapping[str, str]
    base_env: Mapping[str, str]
    host_paths: tuple[Path, ...] = ()
    # Applied to every RUN step's environment last; None removes a variable.
    run_env: Mapping[str, str | None] = field(default_factory=dict)
    log: list[str] = field(default_factory=list)

    def host(self, path: str) -> Path:
        """A container path on this machine: build-arg paths as given, others under root."""
        if any(Path(path).is_relative_to(p) for p in self.host_paths):
            return Path(path)
        return self.root / path.lstrip("/")

    def run(self, timeout: float) -> dict[str, str]:
        values = dict(self.base_env)
        workdir = self.root
        workdir.mkdir(parents=True, exist_ok=True)
        ignore = DockerIgnore((self.context / ".dockerignore").read_text())
        for instruction in self.stage.instructions:
            keyword = instruction.keyword
            if keyword in ("ARG", "ENV"):
                values = apply_arg_or_env(self.dockerfile, instruction, self.build_args, values)
            elif keyword == "WORKDIR":
                workdir = self.host(expand(instruction.args, values))
                workdir.mkdir(parents=True, exist_ok=True)
            elif keyword == "COPY":
                self._copy(expand(instruction.args, values), workdir, ignore)
            elif keyword == "RUN":
                self._run(instruction, values, workdir, timeout)
            else:
                raise NotImplementedError(f"line {instruction.line}: {keyword} in a build stage")
        return values

    def _copy(self, args: str, workdir: Path, ignore: DockerIgnore) -> None:
        words = args.split()
        assert not any(w.startswith("--") for w in words), "COPY flags in a build stage"
        *sources, dest = words
        target = self.host(dest) if dest.startswith("/") else workdir / dest
        into_dir = dest.endswith("/") or len(sources) > 1
        for source in sources:
            src = self.context / source
            if src.is_dir():
                # Docker copies a directory's contents, filtered by .dockerignore.
                copied = 0
                for path in sorted(src.rglob("*")):
                    relative = path.relative_to(self.context).as_posix()
                    if path.is_file() and not ignore.excluded(relative):
                        out = target / path.relative_to(src)
                        out.parent.mkdir(parents=True, exist_ok=True)
                        shutil.copy2(path, out)
                        copied += 1
                assert copied, f"COPY {source}: .dockerignore leaves nothing in it"
            else:
                assert not ignore.excluded(source), f"COPY {source}: excluded by .dockerignore"
                out = target / src.name if into_dir else target
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, out)

    def _run(
        self, instruction: Instruction, values: Mapping[str, str], cwd: Path, timeout: float
    ) -> None:
        argv = instruction.exec_form() or ["/bin/sh", "-c", instruction.args]
        env = dict(values)
        for name, value in self.run_env.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        done = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        self.log.append(f"$ {instruction.args}\n{done.stdout}{done.stderr}")
        assert done.returncode == 0, f"RUN at line {instruction.line} failed:\n{self.log[-1]}"


def runtime_env(dockerfile: Dockerfile, build_args: Mapping[str, str]) -> dict[str, str]:
    """The environment a container of the final stage starts with."""
    return stage_values(dockerfile, dockerfile.final, build_args, {"PATH": DOCKER_PATH})


def command(stage: Stage) -> list[str]:
    """ENTRYPOINT followed by CMD, both required to be in exec form."""
    argv: list[str] = []
    for keyword in ("ENTRYPOINT", "CMD"):
        found = stage.all(keyword)
        if found:
            form = found[-1].exec_form()
            assert form is not None, f"{keyword} must be in exec form (signals reach the daemon)"
            argv += form
    return argv


def passthrough_env() -> dict[str, str]:
    """Network plumbing from this machine (proxies, CA bundles): it changes nothing installed."""
    names = ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "SSL_CERT_FILE", "PIP_CERT")
    return {k: v for k, v in os.environ.items() if k.upper() in names}
