"""`ConfigError` and the translation of pydantic's errors into "key.path: message" lines."""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Sequence

from pydantic import BaseModel, ValidationError

# Values under these keys are never echoed back in a problem (they may hold passwords).
_SECRET_KEYS = frozenset({"dsn", "shared_secret"})


class ConfigError(Exception):
    """The configuration is unusable; `problems` lists each problem as "key.path: message"."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        count = len(self.problems)
        heading = "1 problem" if count == 1 else f"{count} problems"
        super().__init__(f"{heading} in the configuration:\n" + "\n".join(
            f"  - {problem}" for problem in self.problems
        ))


def describe_validation_error(error: ValidationError, root: type[BaseModel]) -> list[str]:
    """One line per problem, ``key.path: message``, in the order pydantic found them."""
    problems: list[str] = []
    for detail in error.errors(include_url=False):
        loc = tuple(detail["loc"])
        path = ".".join(str(part) for part in loc) or "(top level)"
        problems.append(f"{path}: {_message(detail, loc, root)}")
    return problems


def _message(detail: typing.Any, loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    kind = detail["type"]
    if kind == "extra_forbidden":
        return _unknown_key_message(loc, root)
    if kind == "missing":
        return "required key is missing"
    if kind == "value_error":
        return str(detail["ctx"]["error"])
    if kind == "path_type":
        return f"expected a path, got {_describe_input(detail.get('input'))}"
    message = str(detail["msg"])
    secret = any(part in _SECRET_KEYS for part in loc)
    if kind.endswith("_type") and "input" in detail and not secret:
        message += f", got {_describe_input(detail['input'])}"
    return message


def _describe_input(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return repr(value)
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _unknown_key_message(loc: tuple[int | str, ...], root: type[BaseModel]) -> str:
    model = _model_at(loc[:-1], root)
    if model is None:
        return "unknown key"
    known = list(model.model_fields)
    close = difflib.get_close_matches(str(loc[-1]), known, n=1)
    if close:
        return f"unknown key (did you mean {close[0]!r}?)"
    return "unknown key; known keys here: " + ", ".join(known)


def _model_at(loc: tuple[int | str, ...], root: type[BaseModel]) -> type[BaseModel] | None:
    """The model class found by following `loc` down from `root`, if there is one."""
    current: object = root
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel):
            field = current.model_fields.get(str(part))
            if field is None:
                return None
            current = field.annotation
        elif typing.get_origin(current) in (tuple, list) and isinstance(part, int):
            current = typing.get_args(current)[0]
        elif typing.get_origin(current) is dict:
            current = typing.get_args(current)[1]
        else:
            return None
    current = _unwrap(current)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: object) -> object:
    """Strip `X | None` and `Annotated[X, ...]` down to X."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
