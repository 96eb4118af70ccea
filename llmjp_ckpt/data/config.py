"""The corpus config (``configs/data/*.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from llmjp_ckpt.config import build, read_yaml
from llmjp_ckpt.errors import UserError

__all__ = ["DataConfig", "build", "read_yaml"]

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
    """``first``: the first window of each long-enough document (the study);
    ``pack``: every whole window of each document."""
    token_budget: int = 165_000_000
    """Trained tokens (64 a window) over all splits and languages."""
    split: list[float] = field(default_factory=lambda: [8, 1, 1])
    """train : val : test ratio, assigned per document."""
    seed: int = 0
    """Seed of the split assignment and of the train shuffle."""
    shuffle: bool = True
    """Shuffle the train split (a seeded permutation of each language's windows) so a batch mixes
    documents; ``false`` keeps reading order. Val and test stay in reading order."""
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
        if (
            len(self.split) != 3
            or any((not isinstance(s, (int, float))) or s < 0 for s in self.split)
            or sum(self.split) <= 0
        ):
            raise UserError(f"split={self.split!r}: expected three non-negative numbers, e.g. [8, 1, 1]")
        if not isinstance(self.seed, int) or self.seed < 0:
            raise UserError(f"seed={self.seed!r}: expected a non-negative integer")
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
