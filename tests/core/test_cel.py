"""The CEL wrapper behaves the same over both libraries: positions on compile errors, exceptions on evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import get_args

import pytest

from mcp_gateway.core.cel import Backend, CelCompileError, CelEvaluationError, Environment, VariableType

VARIABLES: Mapping[str, VariableType] = {"identity": "map", "task": "dyn", "now": "timestamp"}
BACKENDS = get_args(Backend)


@pytest.fixture(params=BACKENDS)
def env(request: pytest.FixtureRequest) -> Environment:
    return Environment(VARIABLES, request.param)


def test_cel_expr_python_is_the_default_backend() -> None:
    assert Environment(VARIABLES).backend == "cel-expr-python"


def test_syntax_error_carries_line_and_column(env: Environment) -> None:
    with pytest.raises(CelCompileError) as caught:
        env.compile("identity.id == 'a' &&\n  )")
    issue = caught.value.issues[0]
    assert (issue.line, issue.column) == (2, 3)
    assert "Syntax error" in issue.message
    assert str(issue).startswith("line 2, column 3: ")


def test_type_errors_are_caught_at_compile_time_by_the_checking_backend() -> None:
    env = Environment(VARIABLES, "cel-expr-python")
    with pytest.raises(CelCompileError) as caught:
        env.compile("1 + 'x' == 2 || undeclared")
    assert [(i.line, i.column) for i in caught.value.issues] == [(1, 3), (1, 17)]
    assert "no matching overload" in caught.value.issues[0].message
    assert "undeclared reference to 'undeclared'" in caught.value.issues[1].message


def test_checking_backend_reports_the_result_type() -> None:
    env = Environment(VARIABLES, "cel-expr-python")
    assert env.compile("identity.id == 'a'").result_type == "bool"
    assert env.compile("identity.id").result_type == "dyn"
    assert env.compile("1 + 2").result_type == "int"


def test_missing_key_is_an_evaluation_error(env: Environment) -> None:
    program = env.compile("identity.nope == 'x'")
    with pytest.raises(CelEvaluationError):
        program.evaluate({"identity": {"id": "a"}, "task": None, "now": datetime.now(UTC)})


def test_reading_through_null_is_an_evaluation_error(env: Environment) -> None:
    program = env.compile("task.context.customer == 'c1'")
    with pytest.raises(CelEvaluationError):
        program.evaluate({"identity": {}, "task": None, "now": datetime.now(UTC)})


def test_one_activation_serves_several_programs(env: Environment) -> None:
    activation = env.bind({"identity": {"id": "a", "labels": {"team": "x"}}, "task": None, "now": datetime.now(UTC)})
    assert env.compile("identity.id == 'a'").evaluate(activation) is True
    assert env.compile("identity.labels.team").evaluate(activation) == "x"
    assert env.compile("task == null").evaluate(activation) is True


def test_tuples_read_only_mappings_and_naive_datetimes_are_accepted(env: Environment) -> None:
    values = {
        "identity": {"labels": MappingProxyType({"team": "x"}), "roles": ("admin", "dev")},
        "task": None,
        "now": datetime(2030, 1, 1, 12, 0),
    }
    program = env.compile("identity.labels.team == 'x' && 'dev' in identity.roles && now.getFullYear() == 2030")
    assert program.evaluate(values) is True


def test_composite_results_come_back_as_plain_python(env: Environment) -> None:
    program = env.compile("{'a': [1, 2], 'b': identity.id}")
    assert program.evaluate({"identity": {"id": "z"}, "task": None, "now": datetime.now(UTC)}) == {
        "a": [1, 2],
        "b": "z",
    }
