"""Strict YAML -> dataclass loading shared by every config (``configs/**/*.yaml``), and JSON reading.

Unknown fields, bad YAML, a missing file or a wrong type are a :class:`UserError` naming the file
and the field.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, TypeVar

import yaml

from llmjp_ckpt.errors import UserError

T = TypeVar("T")


def read_yaml(path: str | Path) -> dict[str, Any]:
    """A YAML file as a mapping; bad YAML or a missing file is a :class:`UserError`."""
    path = Path(path)
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
    try:
        return cls(**data)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


def read_json(path: str | Path) -> Any:
    """A JSON file's content; unreadable, non-UTF-8 or invalid JSON is a :class:`UserError`."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not valid UTF-8 JSON ({exc})") from None


def load(cls: type[T], path: str | Path) -> T:
    """The dataclass ``cls`` from the YAML file ``path``."""
    return build(cls, read_yaml(path), str(path))
