"""Shared fixtures. Session-scoped ones are built once and must be treated as read-only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture(scope="session")
def toy_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The quick toy world (``make_toy(quick=True, seed=0)``), built once for the whole session.

    Holds ``corpus/``, ``concepts.json``, ``tokenizer/``, ``checkpoints/iter_*/``,
    ``train_log.json`` and ``toy.json``. Read-only: copy it before changing anything.
    """
    from llmjp_ckpt.toy import make_toy

    out = tmp_path_factory.mktemp("toy")
    make_toy(out, quick=True, seed=0)
    return out
