"""Builders for the label tests: the shared peer file (loaded once per process), tiny windows."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest

PEER = Path(__file__).resolve().parents[2] / "shared" / "data" / "peer-labels-dev.jsonl.gz"


@functools.cache
def _load():
    from llmjp_ckpt.labels.examples import load_records

    return tuple(load_records(PEER))


def peer_records():
    """All 298 records, or skip the calling test when ../shared is absent."""
    if not PEER.exists():
        pytest.skip(f"shared peer file absent: {PEER}")
    return _load()


def win(*pairs):
    """A window from alternating token, activation arguments: ``win(" a", 0, "b", 10)``."""
    return [[pairs[i], pairs[i + 1]] for i in range(0, len(pairs), 2)]


def build_examples(max_tokens, *, n=None, context=("の", " the", "。", " of"), seed=0):
    """Windows of 8 tokens whose max (activation 10) cycles through ``max_tokens``."""
    import random

    rng = random.Random(seed)
    n = n or len(max_tokens)
    out = []
    for i in range(n):
        left = [[rng.choice(context), rng.choice([0, 1, 2])] for _ in range(4)]
        right = [[rng.choice(context), rng.choice([0, 1])] for _ in range(3)]
        out.append(left + [[max_tokens[i % len(max_tokens)], 10]] + right)
    return out
