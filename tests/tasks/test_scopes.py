"""Who may start a task: pattern coverage, the lists a task would widen, and startableBy."""

from __future__ import annotations

import pytest

from mcp_gateway.config import Identity, StartableBy, TaskDefinition
from mcp_gateway.tasks.who_may_start import covers, may_start, pattern_covers, widened_lists


@pytest.mark.parametrize(
    ("granted", "requested"),
    [
        ("demo__echo", "demo__echo"),
        ("demo__e*", "demo__e*"),
        ("demo__[ab]", "demo__[ab]"),
    ],
)
def test_equal_patterns_cover_each_other(granted: str, requested: str) -> None:
    assert pattern_covers(granted, requested)


@pytest.mark.parametrize(
    ("granted", "requested", "expected"),
    [
        ("demo__e*", "demo__echo", True),
        ("demo__?cho", "demo__echo", True),
        ("demo__[de]cho", "demo__echo", True),
        ("*", "anything", True),
        ("demo__e*", "demo__add", False),
        ("demo__echo", "demo__Echo", False),
        ("demo__E*", "demo__echo", False),
    ],
)
def test_identity_glob_covers_a_plain_name_it_matches(granted: str, requested: str, expected: bool) -> None:
    assert pattern_covers(granted, requested) is expected


@pytest.mark.parametrize(
    ("granted", "requested", "expected"),
    [
        ("demo__*", "demo__e*", True),
        ("demo__*", "demo__[ab]*", True),
        ("demo__*", "demo__?", True),
        ("*", "*", True),
        ("*", "demo__*", True),
        ("demo__*", "demo_*", False),
        ("demo__*", "*", False),
        ("demo__*", "other__*", False),
    ],
)
def test_prefix_glob_covers_every_pattern_with_that_prefix(granted: str, requested: str, expected: bool) -> None:
    assert pattern_covers(granted, requested) is expected


@pytest.mark.parametrize(
    ("granted", "requested"),
    [
        # Each would cover in fact, but only a comparison of glob languages could prove it: refused.
        ("demo__?", "demo__[ab]"),
        ("d*__*", "demo__e*"),
        ("demo__[a-z]*", "demo__e*"),
        # A plain name never covers a glob, even one that matches only that name.
        ("demo__echo", "demo__ech[o]"),
    ],
)
def test_glob_against_glob_is_refused_unless_equal_or_prefix(granted: str, requested: str) -> None:
    assert not pattern_covers(granted, requested)


def test_no_list_covers_everything_and_only_no_list_covers_no_list() -> None:
    assert covers(None, ("a", "b*"))
    assert covers(None, None)
    assert not covers(("*",), None)
    assert not covers((), None)


def test_every_requested_pattern_needs_a_covering_granted_one() -> None:
    assert covers(("a", "b*"), ("a", "b1", "b*"))
    assert not covers(("a", "b*"), ("a", "c"))
    assert covers((), ())
    assert covers(("a",), ())
    assert not covers((), ("a",))


def identity(
    tools: tuple[str, ...] | None = None,
    resources: tuple[str, ...] | None = None,
    prompts: tuple[str, ...] | None = None,
    labels: dict[str, str] | None = None,
) -> Identity:
    return Identity(
        id="agent",
        name="agent",
        labels=labels or {},
        allowed_tools=tools,
        allowed_resources=resources,
        allowed_prompts=prompts,
    )


def task(
    tools: tuple[str, ...] | None = None,
    resources: tuple[str, ...] | None = None,
    prompts: tuple[str, ...] | None = None,
    startable_by: StartableBy | None = None,
) -> TaskDefinition:
    return TaskDefinition(
        id="t",
        name="t",
        context_schema={},
        allowed_tools=tools,
        allowed_resources=resources,
        allowed_prompts=prompts,
        startable_by=startable_by,
    )


def test_widened_lists_names_each_kind_the_task_widens() -> None:
    narrow = identity(tools=("a",), resources=("file:///a",), prompts=())
    broad = task(tools=("a", "b"), resources=("file:///*",), prompts=("p",))
    assert widened_lists(narrow, broad) == ["allowedTools", "allowedResources", "allowedPrompts"]
    assert widened_lists(narrow, task(tools=("a",))) == []


def test_task_list_left_unset_does_not_widen_a_restricted_identity() -> None:
    assert widened_lists(identity(tools=("a",), resources=(), prompts=()), task()) == []
    assert may_start(identity(tools=()), task())


def test_unrestricted_identity_may_start_any_task_without_startable_by() -> None:
    assert may_start(identity(), task(tools=("*",), resources=("x",), prompts=()))


def test_restricted_identity_may_not_start_a_broader_task() -> None:
    assert not may_start(identity(tools=("a",)), task(tools=("a", "b")))
    assert not may_start(identity(prompts=("p",)), task(prompts=("p*",)))


def test_startable_by_id_or_all_labels_admits_even_a_widening_identity() -> None:
    narrow = identity(tools=("a",), labels={"team": "support", "tier": "1"})
    broad = ("a", "b")
    assert may_start(narrow, task(tools=broad, startable_by=StartableBy(identities=frozenset({"agent"}))))
    assert may_start(narrow, task(tools=broad, startable_by=StartableBy(labels={"team": "support"})))
    assert may_start(narrow, task(tools=broad, startable_by=StartableBy(labels={"team": "support", "tier": "1"})))


def test_startable_by_refuses_everyone_it_does_not_name_even_unrestricted() -> None:
    unrestricted = identity(labels={"team": "support"})
    assert not may_start(unrestricted, task(startable_by=StartableBy(identities=frozenset({"someone-else"}))))
    assert not may_start(unrestricted, task(startable_by=StartableBy(labels={"team": "support", "tier": "1"})))
    assert not may_start(unrestricted, task(startable_by=StartableBy(labels={"team": "sales"})))
