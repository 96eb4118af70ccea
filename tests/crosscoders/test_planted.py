"""The crosscoder recovers planted emergence: directions that exist only from checkpoint t on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from llmjp_ckpt.crosscoders.analysis import classify, load_crosscoder
from llmjp_ckpt.crosscoders.architecture import block_norm_sum
from llmjp_ckpt.crosscoders.stream import Planted
from llmjp_ckpt.crosscoders.train import CrosscoderConfig, train_crosscoder
from llmjp_ckpt.errors import UserError

N_BLOCKS, D, N_FEATURES = 3, 16, 24


def born(j: int) -> int:
    return 0 if j < 12 else (1 if j < 18 else 2)  # 12 from the start, 6 from t=1, 6 from t=2


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Planted, object]:
    planted = Planted.make(N_FEATURES, N_BLOCKS, D, active=3, seed=0, born=born)
    cfg = CrosscoderConfig(expansion=4, k=4, lr=3e-3, training_tokens=120_000, batch_tokens=512,
                           dead_feature_window=40, seed=0)
    out = train_crosscoder(planted.stream(cfg.batch_tokens, seed=1), N_BLOCKS, D, cfg,
                           tmp_path_factory.mktemp("cc") / "crosscoder", ["a", "b", "c"])
    return planted, load_crosscoder(out)


def recovery(planted: Planted, sae) -> tuple[float, float]:
    """(fraction of planted features with a latent at cosine >= 0.9, fraction of those whose
    latent's norm is < 0.15 of its max at every checkpoint before the feature's birth)."""
    truth = planted.directions.reshape(N_FEATURES, -1)
    truth = truth / truth.norm(dim=-1, keepdim=True)
    W = sae.W_dec.detach()
    cos = (truth @ (W / W.norm(dim=-1, keepdim=True)).T)
    best = cos.max(dim=1)
    norms = sae.decoder_norms().numpy()
    rel = norms / norms.max(axis=1, keepdims=True)
    found = best.values >= 0.9
    ok = [bool((rel[int(best.indices[j]), : int(planted.born[j])] < 0.15).all())
          for j in range(N_FEATURES) if found[j]]
    return float(found.float().mean()), float(np.mean(ok)) if ok else 0.0


def test_planted_births_are_recovered(trained) -> None:
    planted, sae = trained
    found, absent_before_birth = recovery(planted, sae)
    assert found >= 0.9, f"only {found:.0%} of planted features recovered"
    assert absent_before_birth >= 0.9, f"only {absent_before_birth:.0%} silent before birth"
    classes, _ = classify(sae.decoder_norms().numpy(), present=0.5, absent=0.15)
    assert classes.count("emerging") >= 10  # 12 planted features are born after the first block


def test_saved_crosscoder_is_folded_and_names_its_blocks(trained) -> None:
    _, sae = trained
    assert sae.cfg.block_names == ["a", "b", "c"]
    assert torch.allclose(block_norm_sum(sae.W_dec.detach(), N_BLOCKS),
                          torch.ones(sae.cfg.d_sae), atol=1e-4)
    x = torch.randn(8, N_BLOCKS * D)
    assert ((sae.encode(x) != 0).sum(-1) <= 4).all()


def test_run_shorter_than_the_dead_window_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="dead_feature_window 100 is not shorter than the run"):
        CrosscoderConfig(training_tokens=10_000, batch_tokens=1000, dead_feature_window=100)
