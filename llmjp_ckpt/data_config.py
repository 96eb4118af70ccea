"""The corpus config (``configs/data/*.yaml``) and a strict YAML -> dataclass loader."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
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
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    if unknown:
        raise UserError(f"{where}: unknown field {unknown[0]!r}: expected one of {', '.join(sorted(names))}")
    try:
        return cls(**data)
    except TypeError as exc:
        raise UserError(f"{where}: {exc}") from None


@dataclass
class DataConfig:
    """How RUN/data/{train,val,test} are built from llm-jp-corpus v3 shards."""

    tokenizer: str
    """Tokenizer folder (or a checkpoint folder holding tokenizer files)."""
    corpus_root: str | None = None
    """Local llm-jp-corpus v3 root holding ``<lang subdir>/train_*.jsonl[.gz]``."""
    languages: dict[str, str] = field(default_factory=lambda: {"ja": "ja/ja_wiki", "en": "en/en_wiki"})
    """Language code -> shard folder below ``corpus_root`` (or a Hugging Face dataset id with ``hf``)."""
    hf: bool = False
    """Read each language from a Hugging Face dataset (``languages`` values are dataset ids, streamed)."""
    text_field: str = "text"
    """JSON field holding a document's text."""
    context_size: int = 65
    """Tokens per window: BOS + 64 trained positions."""
    windows: str = "first"
    """``first``: the first window of each long-enough document (the study); ``pack``: every whole window of each document."""
    token_budget: int = 165_000_000
    """Trained tokens (64 a window) over all splits and languages."""
    split: list[int] = field(default_factory=lambda: [8, 1, 1])
    """train : val : test ratio, assigned per document."""
    seed: int = 0
    """Seed of the split assignment."""
    on_bad_line: str = "fail"
    """``fail`` or ``skip`` (and count) on a malformed / non-UTF-8 JSONL line."""
    text_chars: int = 4096
    """Characters tokenised first in ``first`` mode (the whole text when they give too few tokens)."""
    batch_docs: int = 256
    """Documents tokenised per batch."""

    def __post_init__(self) -> None:
        if self.context_size < 2:
            raise UserError(f"context_size={self.context_size}: expected >= 2 (BOS + trained tokens)")
        if self.windows not in ("first", "pack"):
            raise UserError(f"windows={self.windows!r}: expected 'first' or 'pack'")
        if self.on_bad_line not in ("fail", "skip"):
            raise UserError(f"on_bad_line={self.on_bad_line!r}: expected 'fail' or 'skip'")
        if len(self.split) != 3 or any((not isinstance(s, (int, float))) or s < 0 for s in self.split) or sum(self.split) <= 0:
            raise UserError(f"split={self.split!r}: expected three non-negative numbers, e.g. [8, 1, 1]")
        if self.token_budget <= 0:
            raise UserError(f"token_budget={self.token_budget}: expected > 0")
        if not self.languages:
            raise UserError("languages: expected at least one language")
        if not self.hf and not self.corpus_root:
            raise UserError("corpus_root: expected a local llm-jp-corpus root (or hf: true)")

    @property
    def trained_per_window(self) -> int:
        return self.context_size - 1

    @classmethod
    def from_yaml(cls, path: str | Path) -> DataConfig:
        """Load a config file; relative paths are taken from the current directory."""
        return build(cls, read_yaml(path), str(path))
