"""The one place that talks to a CEL implementation.

Policies are written in CEL; which library runs them is an implementation detail kept behind this module so the
rest of the gateway sees three things: an :class:`Environment` that declares the variables, a compiled
:class:`Program`, and two error types that carry positions. We prefer ``cel-expr-python`` (the C++ runtime: it
type-checks against the declared variables at compile time, so an undeclared name or ``1 + 'x'`` stops start-up
instead of denying calls later) and fall back to ``common-expression-language`` (Rust; syntax checked at compile
time, everything else at evaluation) only when the first cannot be imported.

Both libraries reject some Python values that JSON never produces but our own frozen config does (tuples,
read-only mappings), so :meth:`Environment.bind` converts values to plain dicts and lists once per activation.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

VariableType = Literal["dyn", "map", "timestamp", "string", "int", "double", "bool"]
Backend = Literal["cel-expr-python", "common-expression-language"]

_SCALARS = frozenset({str, int, float, bool, type(None), bytes})
_ISSUE = re.compile(r"ERROR: <input>:(\d+):(\d+): ([^\n]*)")
# Trailing noise in cel-cpp messages: the status code, and the (always empty) container we never configure.
_NOISE = re.compile(r"\s*\[[A-Z_]+\]$|\s*\(in container ''\)")


@dataclass(frozen=True)
class CelIssue:
    """One compile problem; line and column are 1-based, None when the library did not say where."""

    message: str
    line: int | None = None
    column: int | None = None

    def __str__(self) -> str:
        if self.line is None:
            return self.message
        return f"line {self.line}, column {self.column}: {self.message}"


class CelCompileError(Exception):
    """An expression that does not parse or type-check; one issue per problem the library reported."""

    def __init__(self, issues: tuple[CelIssue, ...]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(issue) for issue in issues))


class CelEvaluationError(Exception):
    """An expression that compiled but could not produce a value for these inputs (missing key, no overload)."""


@dataclass(frozen=True)
class Activation:
    """Variable bindings converted for the backend once, so several programs can share them."""

    native: Any


class Program:
    """A compiled expression, evaluated many times without re-parsing."""

    def __init__(
        self,
        source: str,
        result_type: str | None,
        run: Callable[[Any], Any],
        bind: Callable[[Mapping[str, Any]], Activation],
    ) -> None:
        self.source = source
        # The checked result type in lower case ("bool", "dyn", "int", ...); None when the backend cannot tell.
        self.result_type = result_type
        self._run = run
        self._bind = bind

    def evaluate(self, activation: Activation | Mapping[str, Any]) -> Any:
        """The expression's value as a plain Python value; raises CelEvaluationError instead of returning one."""
        if not isinstance(activation, Activation):
            activation = self._bind(activation)
        return self._run(activation.native)


class Environment:
    """Declared variables plus the backend that compiles and runs expressions against them."""

    def __init__(self, variables: Mapping[str, VariableType], backend: Backend | None = None) -> None:
        self.backend: Backend = backend or _default_backend()
        if self.backend == "cel-expr-python":
            self._impl: _CelCpp | _CelRust = _CelCpp(variables)
        else:
            self._impl = _CelRust()

    def compile(self, source: str) -> Program:
        result_type, run = self._impl.compile(source)
        return Program(source, result_type, run, self.bind)

    def bind(self, values: Mapping[str, Any]) -> Activation:
        return Activation(self._impl.bind({name: to_cel(value) for name, value in values.items()}))

    def bind_converted(self, values: dict[str, Any]) -> Activation:
        """Like :meth:`bind`, for values already made CEL-ready with :func:`to_cel` (the caller keeps them)."""
        return Activation(self._impl.bind(values))


def to_cel(value: Any) -> Any:
    """Plain dicts, lists and aware datetimes: the only containers both libraries accept."""
    kind = type(value)
    # Exact-type checks first: this runs on every call's arguments, and ABC isinstance checks are slow.
    if kind in _SCALARS:
        return value
    if kind is dict or isinstance(value, Mapping):
        return {key: to_cel(item) for key, item in value.items()}
    if kind is list or isinstance(value, list | tuple):
        return [to_cel(item) for item in value]
    if isinstance(value, datetime) and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


def _default_backend() -> Backend:
    try:
        import cel_expr_python.cel  # noqa: F401
    except ImportError:
        try:
            import cel  # noqa: F401
        except ImportError as exc:
            raise ImportError("no CEL implementation: install cel-expr-python") from exc
        return "common-expression-language"
    return "cel-expr-python"


def _issues(message: str) -> tuple[CelIssue, ...]:
    found = tuple(
        CelIssue(_NOISE.sub("", text.strip()), int(line), int(column)) for line, column, text in _ISSUE.findall(message)
    )
    return found or (CelIssue(message.strip()),)


class _CelCpp:
    """cel-expr-python: evaluation errors come back as values of type ERROR, not as exceptions."""

    def __init__(self, variables: Mapping[str, VariableType]) -> None:
        from cel_expr_python import cel

        t = cel.Type
        types = {
            "dyn": t.DYN,
            "map": t.Map(t.STRING, t.DYN),
            "timestamp": t.TIMESTAMP,
            "string": t.STRING,
            "int": t.INT,
            "double": t.DOUBLE,
            "bool": t.BOOL,
        }
        self._error_type = t.ERROR
        self._env = cel.NewEnv(variables={name: types[kind] for name, kind in variables.items()})

    def compile(self, source: str) -> tuple[str | None, Callable[[Any], Any]]:
        try:
            expression = self._env.compile(source)
        except (RuntimeError, ValueError) as exc:
            raise CelCompileError(_issues(str(exc))) from None
        error_type = self._error_type

        def run(native: Any) -> Any:
            result = expression.eval(native)
            value = result.value()
            # Errors carry their message as a str value, so a bool is never an error and skips the type check.
            if type(value) is bool:
                return value
            if result.type() == error_type:
                raise CelEvaluationError(str(value))
            return result.plain_value()

        return str(expression.return_type().name()).lower(), run

    def bind(self, values: dict[str, Any]) -> Any:
        return self._env.Activation(values)


class _CelRust:
    """common-expression-language: no declarations, so names and types are only checked at evaluation."""

    def __init__(self) -> None:
        import cel

        self._cel = cel

    def compile(self, source: str) -> tuple[str | None, Callable[[Any], Any]]:
        try:
            program = self._cel.compile(source)
        except ValueError as exc:
            raise CelCompileError(_issues(str(exc))) from None

        def run(native: Any) -> Any:
            try:
                return program.execute(native)
            # The library signals evaluation failures with several built-in exception types.
            except KeyError as exc:
                raise CelEvaluationError(f"no such key: {exc.args[0]}") from None
            except Exception as exc:
                raise CelEvaluationError(str(exc) or type(exc).__name__) from None

        return None, run

    def bind(self, values: dict[str, Any]) -> Any:
        return self._cel.Context(values)
