"""The toy world's config: corpus, tokenizer size, model shape, LM training schedule, signals."""

from __future__ import annotations

import dataclasses
import itertools
from dataclasses import dataclass, field

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.toy.corpus import CorpusConfig
from llmjp_ckpt.toy.tokenizer import check_kind
from llmjp_ckpt.toy.train import LMTrainConfig, ModelShape


@dataclass(frozen=True)
class ToyConfig:
    """Everything that decides the toy world (saved in ``toy.json``)."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    vocab_size: int = 1000  # upper bound for the tokenizer; the model's is padded past it
    tokenizer: str = "sentencepiece"  # "sentencepiece" (LLM-jp's kind) or "byte-bpe" (GPT-2 kind)
    shape: ModelShape = field(default_factory=ModelShape)
    train: LMTrainConfig = field(default_factory=LMTrainConfig)
    signals: bool = True  # measure the learning signals at every checkpoint
    n_translation: int = 300
    per_form: int = 6

    def __post_init__(self) -> None:
        check_kind(self.tokenizer)
        steps = self.train.steps
        if not steps or any(not isinstance(s, int) or isinstance(s, bool) or s < 1 for s in steps):
            raise UserError(f"toy steps {list(steps)!r}: expected positive integers")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise UserError(f"toy steps {list(steps)!r}: expected a strictly increasing schedule")
        if self.shape.hidden % self.shape.heads:
            raise UserError(f"toy shape: hidden {self.shape.hidden} is not divisible by heads {self.shape.heads}")

    @property
    def layer(self) -> int:
        """The layer the SAEs read, chosen like the study's (12 of 24): the middle block, 1-based."""
        return max(1, self.shape.layers // 2)


def quick_config(steps: tuple[int, ...] | None = None,
                 tokenizer: str = "sentencepiece") -> ToyConfig:
    """A small world for tests and a first look (well under a minute of training)."""
    return ToyConfig(
        corpus=CorpusConfig(n_docs=590),  # ~64k tokens in documents of 65-150 tokens
        shape=ModelShape(hidden=64, intermediate=192, layers=4, heads=4),
        train=LMTrainConfig(steps=steps or (10, 30, 100, 200), batch=16),
        n_translation=100, per_form=3, tokenizer=tokenizer,
    )


def default_config(steps: tuple[int, ...] | None = None,
                   tokenizer: str = "sentencepiece") -> ToyConfig:
    """The demo's world."""
    return ToyConfig(
        corpus=CorpusConfig(n_docs=2220),  # ~240k tokens
        shape=ModelShape(hidden=96, intermediate=256, layers=4, heads=4),
        # to 2000: the ja-en alignment forms between 300 and 1000 and keeps growing to 2000
        # (planted_timeline.json), so the series holds checkpoints after it as well as before
        train=LMTrainConfig(steps=steps or (10, 30, 100, 300, 1000, 2000), batch=16),
        tokenizer=tokenizer,
    )


def world_fingerprint(config: ToyConfig) -> str:
    """A short hash of everything that decides the toy world besides the seed: ``config`` and the
    generator's lexicon, tags and frames (which live in code, not in the config)."""
    from llmjp_ckpt.runfolder import config_hash
    from llmjp_ckpt.toy.corpus import FRAME_WEIGHTS, FRAMES
    from llmjp_ckpt.toy.lexicon import CONCEPTS, TAG_OF

    return config_hash({"config": dataclasses.asdict(config), "concepts": [dataclasses.asdict(c) for c in CONCEPTS],
                        "tags": TAG_OF, "frames": [dataclasses.asdict(f) for f in FRAMES],
                        "weights": list(FRAME_WEIGHTS)})


def parse_seed(seed: object) -> int:
    """``seed`` as a non-negative int, else a :class:`UserError`."""
    if isinstance(seed, bool):
        raise UserError(f"seed {seed!r}: expected a non-negative integer")
    try:
        value = int(seed) if isinstance(seed, (int, str)) else None
    except ValueError:
        value = None
    if value is None or value < 0 or (isinstance(seed, str) and not seed.strip().isdigit()):
        raise UserError(f"seed {seed!r}: expected a non-negative integer")
    return value
