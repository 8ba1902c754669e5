"""A task tool's answer held to the task's ``outputSchema``: the sub-conversation's final text must be that JSON.

Models often wrap JSON in a Markdown code fence, so one fence around the whole answer is taken off. An answer that is
not JSON, or that does not meet the schema, becomes the task tool's error result listing every violation with its
JSON pointer: the calling model may run the task again or give up, but an unchecked answer never passes as the
task's output.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import validators

_FENCE = re.compile(r"^```[A-Za-z0-9_-]*\s*\n(.*)\n\s*```$", re.DOTALL)
_VIOLATIONS_SHOWN = 10


@dataclass(frozen=True)
class CheckedOutput:
    """The output as compact JSON text, or the problem the model is told about."""

    text: str | None = None
    problem: str | None = None


def output_prompt(schema: Mapping[str, Any] | bool) -> str:
    """What the sub-conversation is told about the answer it must give."""
    return (
        "Your final answer must be only a JSON value, with no other text, that meets this JSON Schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )


def check_output(text: str, schema: Mapping[str, Any] | bool) -> CheckedOutput:
    stripped = text.strip()
    fenced = _FENCE.match(stripped)
    try:
        value = json.loads(fenced.group(1) if fenced else stripped)
    except ValueError as exc:
        return CheckedOutput(problem=f"the task's answer is not the JSON its outputSchema asks for: {exc}")
    schema_cls = validators.validator_for(schema)
    validator = schema_cls(schema, format_checker=schema_cls.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(value), key=lambda error: list(map(str, error.absolute_path)))
    if errors:
        listed = "; ".join(f"{_pointer(list(e.absolute_path))}: {e.message}" for e in errors[:_VIOLATIONS_SHOWN])
        more = f" (and {len(errors) - _VIOLATIONS_SHOWN} more)" if len(errors) > _VIOLATIONS_SHOWN else ""
        return CheckedOutput(problem=f"the task's answer does not meet its outputSchema: {listed}{more}")
    return CheckedOutput(text=json.dumps(value, ensure_ascii=False, separators=(",", ":")))


def _pointer(path: list[Any]) -> str:
    return "".join("/" + str(part).replace("~", "~0").replace("/", "~1") for part in path) or "/"
