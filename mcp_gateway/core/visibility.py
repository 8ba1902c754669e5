"""Which tools, resources and prompts a caller may see, and so use.

Precedence from the contract, the same for each kind: the task's list (``allowedTools``, ``allowedResources``,
``allowedPrompts``) if set, else the identity's, else everything. Tool and prompt patterns are globs over exposed
names; resource patterns are globs over URIs (a resource template is judged by its ``uriTemplate`` text). Patterns
are globs compiled once into one regex per pattern list; answers are memoised per (pattern list, name), so the
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

    @staticmethod
    def resource_patterns(identity: Identity, task: TaskDefinition | None) -> tuple[str, ...] | None:
        """The URI globs in force, or None for "every resource"."""
        if task is not None and task.allowed_resources is not None:
            return task.allowed_resources
        return identity.allowed_resources

    @staticmethod
    def prompt_patterns(identity: Identity, task: TaskDefinition | None) -> tuple[str, ...] | None:
        """The prompt-name globs in force, or None for "every prompt"."""
        if task is not None and task.allowed_prompts is not None:
            return task.allowed_prompts
        return identity.allowed_prompts

    def allows(self, patterns: tuple[str, ...] | None, name: str) -> bool:
        """Whether ``name`` (a tool or prompt name, a URI or URI template) matches; the kinds share one cache, as
        one pattern list means the same thing whichever kind it filters."""
        if patterns is None:
            return True
        key = (patterns, name)
        answer = self._answers.get(key)
        if answer is None:
            answer = self._regex(patterns).fullmatch(name) is not None
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
