"""Which tools a caller may see, and so call.

Precedence from the contract: the task's ``allowedTools`` if set, else the identity's, else everything. Patterns
are globs compiled once into one regex per pattern list; answers are memoised per (pattern list, tool), so the
per-request cost is a dict lookup.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable

from mcp_gateway.config import Identity, TaskDefinition

_ALL: tuple[str, ...] | None = None


class Visibility:
    def __init__(self) -> None:
        self._compiled: dict[tuple[str, ...], re.Pattern[str]] = {}
        self._answers: dict[tuple[tuple[str, ...], str], bool] = {}

    @staticmethod
    def patterns(identity: Identity, task: TaskDefinition | None) -> tuple[str, ...] | None:
        """The pattern list in force, or None for "every tool"."""
        if task is not None and task.allowed_tools is not None:
            return task.allowed_tools
        return identity.allowed_tools

    def allows(self, patterns: tuple[str, ...] | None, tool: str) -> bool:
        if patterns is None:
            return True
        key = (patterns, tool)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._regex(patterns).fullmatch(tool) is not None
            if len(self._answers) < 100_000:
                self._answers[key] = answer
        return answer

    def filter(self, patterns: tuple[str, ...] | None, tools: Iterable[str]) -> list[str]:
        return [tool for tool in tools if self.allows(patterns, tool)]

    def _regex(self, patterns: tuple[str, ...]) -> re.Pattern[str]:
        compiled = self._compiled.get(patterns)
        if compiled is None:
            # fnmatch.translate anchors with \Z; an empty list compiles to a pattern that matches nothing.
            body = "|".join(f"(?:{fnmatch.translate(p)})" for p in patterns) or "(?!)"
            compiled = re.compile(body)
            self._compiled[patterns] = compiled
        return compiled
