"""Just enough of a Dockerfile reader for the deployment tests: stages, ENV, COPY, CMD, HEALTHCHECK.

The tests ask the Dockerfile itself what the image does (its command, environment and copied
files) instead of repeating those facts, so the file stays the one source of truth.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

_VARIABLE = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, ENV, ...
    args: str  # the rest, continuation lines joined
    line: int  # 1-based line where the instruction starts


@dataclass(frozen=True)
class Copy:
    sources: tuple[str, ...]
    destination: str
    from_stage: str | None  # --from=..., None for the build context


@dataclass
class Stage:
    name: str | None
    base: str  # the FROM image, or an earlier stage's name
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [i for i in self.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[tuple[int, str]]:
    """(line number, instruction text) with comments dropped and ``\\`` continuations joined."""
    out: list[tuple[int, str]] = []
    start, parts = 0, []
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not parts):
            continue
        if not parts:
            start = number
        if stripped.endswith("\\"):
            parts.append(stripped[:-1].strip())
            continue
        parts.append(stripped)
        out.append((start, " ".join(p for p in parts if p)))
        parts = []
    return out


def expand(value: str, env: dict[str, str]) -> str:
    """Docker's ``$VAR`` / ``${VAR}`` substitution (unknown variables become empty)."""
    return _VARIABLE.sub(lambda m: env.get(m.group(1) or m.group(2), ""), value)


class Dockerfile:
    """A parsed Dockerfile: ``stages`` in file order; the last one is the default target."""

    def __init__(self, path: Path):
        self.path = path
        self.stages: list[Stage] = []
        for line, text in _logical_lines(path.read_text()):
            keyword, _, args = text.partition(" ")
            keyword, args = keyword.upper(), args.strip()
            if keyword == "FROM":
                words = args.split()
                name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
                self.stages.append(Stage(name, words[0]))
            elif self.stages:
                self.stages[-1].instructions.append(Instruction(keyword, args, line))

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def lineage(self, name: str) -> list[Stage]:
        """The stage and the stages it is built FROM, root first."""
        chain = [self.stage(name)]
        names = {s.name for s in self.stages}
        while chain[0].base in names:
            chain.insert(0, self.stage(chain[0].base))
        return chain

    def base_image(self, name: str) -> str:
        return self.lineage(name)[0].base

    def instructions(self, name: str, keyword: str) -> list[Instruction]:
        """Every ``keyword`` instruction that applies to stage ``name``, inherited ones first."""
        return [i for stage in self.lineage(name) for i in stage.all(keyword)]

    def env(self, name: str, base: dict[str, str] | None = None) -> dict[str, str]:
        """The environment stage ``name`` sets, expanded over ``base`` (the base image's env)."""
        env, keys = dict(base or {}), []
        for instruction in self.instructions(name, "ENV"):
            for word in shlex.split(instruction.args):
                key, _, value = word.partition("=")
                env[key] = expand(value, env)
                keys.append(key)
        return {key: env[key] for key in keys}

    def copies(self, name: str | None = None) -> list[Copy]:
        """COPY instructions of stage ``name`` (with inherited ones), or of the whole file."""
        stages = self.lineage(name) if name else self.stages
        result = []
        for instruction in (i for s in stages for i in s.all("COPY")):
            words = shlex.split(instruction.args)
            flags = dict(w[2:].partition("=")[::2] for w in words if w.startswith("--"))
            paths = [w for w in words if not w.startswith("--")]
            result.append(Copy(tuple(paths[:-1]), paths[-1], flags.get("from")))
        return result

    def _last(self, name: str, keyword: str) -> str | None:
        found = self.instructions(name, keyword)
        return found[-1].args if found else None

    def cmd(self, name: str) -> list[str]:
        """The exec-form CMD of stage ``name``."""
        return json.loads(self._last(name, "CMD") or "null")

    def healthcheck(self, name: str) -> list[str]:
        """The exec-form command of stage ``name``'s HEALTHCHECK (options stripped)."""
        args = self._last(name, "HEALTHCHECK") or ""
        return json.loads(args[args.index("CMD") + 3:])

    def user(self, name: str) -> str | None:
        return self._last(name, "USER")

    def exposed_ports(self, name: str) -> set[int]:
        return {int(p.split("/")[0]) for i in self.instructions(name, "EXPOSE") for p in i.args.split()}
