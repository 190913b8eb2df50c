"""Which paths a ``.dockerignore`` keeps out of the build context.

Docker's rules, as far as the tests need them: patterns are relative to the context root,
``*`` and ``?`` stay within one path segment, ``**`` spans any number of segments, ``!``
re-includes, the last matching pattern wins, and a pattern that matches a directory
covers everything inside it.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath


def _regex(pattern: str) -> re.Pattern[str]:
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        else:
            char = pattern[i]
            if char == "*":
                out.append("[^/]*")
            elif char == "?":
                out.append("[^/]")
            elif char == "[":
                end = pattern.index("]", i)
                out.append(pattern[i:end + 1])
                i = end
            else:
                out.append(re.escape(char))
            i += 1
    return re.compile("".join(out))


class DockerIgnore:
    def __init__(self, path: Path):
        self.rules: list[tuple[bool, re.Pattern[str]]] = []
        for line in path.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            keep = line.startswith("!")
            pattern = str(PurePosixPath(line.lstrip("!").strip("/")))
            self.rules.append((keep, _regex(pattern)))

    def excludes(self, path: str | PurePosixPath) -> bool:
        """True if ``path`` (relative to the context root) is left out of the build context."""
        parts = PurePosixPath(path).parts
        candidates = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
        excluded = False
        for keep, regex in self.rules:
            if any(regex.fullmatch(c) for c in candidates):
                excluded = not keep
        return excluded
