"""Who may start a task: the rule that keeps a task session from widening what an identity may do.

A session sees the task's list when the task sets one (see ``visibility``), so a task whose list is broader than its
caller's would hand the caller tools, resources or prompts it was never granted. An identity may therefore start a
task only when the task names it in ``startableBy`` (the operator chose to widen it), or, when the task names nobody,
when the identity's own lists already cover the task's.

Coverage compares pattern lists without knowing which names exist, so it must never say yes by guessing. A task
pattern is covered by an identity pattern only when every name it can match is matched by the identity pattern:

- equal strings cover each other;
- an identity glob covers a plain task name (no ``*``, ``?`` or ``[``) that it matches;
- an identity ``prefix*`` (no other glob characters) covers any task pattern that starts with ``prefix``: every name
  such a pattern matches starts with that literal prefix;
- nothing else is covered, even where a cleverer comparison could prove it (``a?`` against ``a[bc]``): a refused start
  is an operator's config edit away, a wrongly granted one is a leak.

Nothing here may read the store or the network: it runs on every ``POST /v1/tasks/sessions`` and in ``check``.
"""

from __future__ import annotations

from collections.abc import Callable
from fnmatch import fnmatchcase
from typing import Literal

from mcp_gateway.config import Identity, TaskDefinition

ListKind = Literal["allowedTools", "allowedResources", "allowedPrompts"]
Patterns = tuple[str, ...] | None

_GLOB_CHARACTERS = frozenset("*?[")
_LISTS: tuple[tuple[ListKind, Callable[[Identity | TaskDefinition], Patterns]], ...] = (
    ("allowedTools", lambda owner: owner.allowed_tools),
    ("allowedResources", lambda owner: owner.allowed_resources),
    ("allowedPrompts", lambda owner: owner.allowed_prompts),
)


def _is_glob(pattern: str) -> bool:
    return not _GLOB_CHARACTERS.isdisjoint(pattern)


def pattern_covers(granted: str, requested: str) -> bool:
    """Whether every name ``requested`` can match is matched by ``granted`` (case-sensitive, as visibility is)."""
    if granted == requested:
        return True
    if not _is_glob(requested):
        return fnmatchcase(requested, granted)
    prefix = granted[:-1]
    return granted.endswith("*") and not _is_glob(prefix) and requested.startswith(prefix)


def covers(granted: Patterns, requested: Patterns) -> bool:
    """Whether the list ``granted`` already allows everything ``requested`` does (None = everything)."""
    if granted is None:
        return True
    if requested is None:
        return False
    return all(any(pattern_covers(g, r) for g in granted) for r in requested)


def widened_lists(identity: Identity, task: TaskDefinition) -> list[ListKind]:
    """The lists through which a session of ``task`` would grant ``identity`` more than its own.

    A task list left unset is no widening: the session then falls back to the identity's own list.
    """
    return [kind for kind, of in _LISTS if (requested := of(task)) is not None and not covers(of(identity), requested)]


def may_start(identity: Identity, task: TaskDefinition) -> bool:
    """``startableBy`` decides when the task sets it; otherwise the task must not widen the identity."""
    if task.startable_by is not None:
        return task.startable_by.admits(identity)
    return not widened_lists(identity, task)
