"""Strict YAML -> dataclass loading shared by every config (``configs/**/*.yaml``), and JSON reading.

Unknown fields, bad YAML, a missing file or a wrong type are a :class:`UserError` naming the file
and the field. Types are checked once, here, against the dataclass's field annotations (int,
float, str, bool, Path, Literal, list/tuple/dict of those, nested dataclasses, unions/Optional),
so no config repeats ``isinstance`` checks and ``__post_init__`` sees the declared types. A
relative path that does not exist is looked up among the packaged configs
(:func:`llmjp_ckpt.resources.config_path`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.resources import config_path

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file (or packaged config of that name) as a mapping; bad YAML or a missing file is
    a :class:`UserError`."""
    path = config_path(path)
    if not path.is_file():
        raise UserError(f"{path}: config file not found")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise UserError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(data, dict):
        raise UserError(f"{path}: expected a mapping at the top level")
    return data


def build(cls: type[T], data: dict[str, Any], where: str) -> T:
    """``cls(**data)`` with unknown fields an error naming ``where`` and the field."""
    if not isinstance(data, dict):
        raise UserError(f"{where}: expected a mapping of settings, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}: expected one of {', '.join(sorted(names))}")
    hints = _field_types(cls)
    for name, value in data.items():
        expected = _mismatch(value, hints[name]) if name in hints else None
        if expected:
            shown = repr(value) if len(repr(value)) <= 60 else repr(value)[:57] + "..."
            raise UserError(f"{where}: {name}={shown}: expected {expected}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """The evaluated annotations of ``cls``'s fields ({} when they cannot be evaluated)."""
    try:
        hints = typing.get_type_hints(cls)
    except (NameError, TypeError, AttributeError):  # unresolvable annotation: left to cls
        return {}
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name in hints}


def _describe(tp: Any) -> str:
    """``list[int] | None`` -> ``"list of int or null"``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is type(None):
        return "null"
    if origin in (typing.Union, types.UnionType):
        parts = [_describe(a) for a in args]
        return ", ".join(parts[:-1]) + " or " + parts[-1]
    if origin is typing.Literal:
        return "one of " + ", ".join(repr(a) for a in args)
    if origin in (list, tuple, set, frozenset) and args:
        return f"list of {_describe(args[0])}"
    if origin is dict and args:
        return f"mapping of {_describe(args[0])} to {_describe(args[1])}"
    if dataclasses.is_dataclass(tp):
        return f"a mapping of {tp.__name__} settings"
    if tp in (Path,):
        return "str (a path)"
    return getattr(origin or tp, "__name__", str(tp))


def _mismatch(value: Any, tp: Any) -> str | None:
    """None when ``value`` (as YAML gives it) fits the annotation ``tp``, else what was expected."""
    return None if _fits(value, tp) else _describe(tp)


def _fits(value: Any, tp: Any) -> bool:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any or isinstance(tp, (TypeVar, str)):
        return True
    if tp is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits(value, a) for a in args)
    if origin is typing.Literal:
        return value in args
    if tp is bool:
        return isinstance(value, bool)
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if tp is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if tp is str:
        return isinstance(value, str)
    if tp is Path:
        return isinstance(value, (str, Path))
    if origin in (list, tuple, set, frozenset) or tp in (list, tuple, set, frozenset):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and args and args[-1] is not Ellipsis:
            return len(value) == len(args) and all(_fits(v, a) for v, a in zip(value, args))
        return not args or all(_fits(v, args[0]) for v in value)
    if origin is dict or tp is dict:
        if not isinstance(value, dict):
            return False
        return not args or all(_fits(k, args[0]) and _fits(v, args[1]) for k, v in value.items())
    if dataclasses.is_dataclass(tp):
        return isinstance(value, (dict, tp))
    return True  # another class (e.g. a torch dtype): left to the dataclass itself


def read_json(path: str | Path) -> Any:
    """A JSON file's content; unreadable, non-UTF-8 or invalid JSON is a :class:`UserError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid UTF-8 JSON ({exc})") from None


def load(cls: type[T], path: str | Path) -> T:
    """The dataclass ``cls`` from the YAML file ``path``."""
    return build(cls, read_yaml(path), str(path))
