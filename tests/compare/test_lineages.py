"""Lineages: chains, births, deaths, splits, merges, drift, and where mix features come from."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from llmjp_ckpt.compare import lineages as lin
from llmjp_ckpt.compare.decoders import load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, match_decoders
from tests.compare_builders import unit, write_sae

D = 256


@pytest.fixture
def series(tmp_path):
    """Three checkpoints with planted events (indices are chosen, directions random).

    step 0 → 1: features 0-9 kept (B index 10+i); 10 splits into B 0,1; 11 (ja) and 12 (en)
    merge into B 2 (mix); 13 (mix) → B 3 (mix); 14 (ja) → B 4 (mix); B 5 (mix) is new;
    14 and 15 die (15 unrelated to anything later); B 6..9 are fresh.
    step 1 → 2: identical copies (warm-start-like, same indices), except B 9 dies.
    """
    g = torch.Generator().manual_seed(0)
    X = unit(torch.randn(16, D, generator=g))
    Y = unit(torch.randn(30, D, generator=g))
    B = torch.empty(20, D)
    B[10:20] = unit(0.97 * X[0:10] + 0.243 * Y[0:10])  # kept, cosine ≈ 0.97
    B[0] = unit(X[10] + Y[10])  # split children of 10, cosine ≈ 0.71 each
    B[1] = unit(X[10] + Y[11])
    B[2] = unit(X[11] + X[12])  # merge of ja 11 and en 12
    B[3] = unit(0.95 * X[13] + 0.31 * Y[12])  # from a mixed feature
    B[4] = unit(X[14] + 1.2 * Y[13])  # related (≈ 0.64) to ja 14 but not shared
    B[5:10] = Y[14:19]  # fresh
    C = B.clone()
    C[9] = Y[20]
    folders = [write_sae(tmp_path / str(i), W) for i, W in enumerate([X, B, C])]
    return [load_decoder(f) for f in folders]


def _matches(decs):
    cfg = MatchConfig(threshold=0.8)
    return [match_decoders(decs[t], decs[t + 1], cfg) for t in range(len(decs) - 1)]


def test_events_between_checkpoints(series):
    m01, m12 = _matches(series)
    ev = lin.pair_events(m01, threshold=0.5)
    assert ev["shared"] == 11  # 0-9 kept, 13 → 3
    assert ev["deaths"] == 16 - 11
    assert ev["births"] == 20 - 11
    assert ev["splits"] == 1  # feature 10
    assert ev["merges"] == 1  # B 2
    ev2 = lin.pair_events(m12, threshold=0.5)
    assert ev2["shared"] == 19 and ev2["deaths"] == 1 and ev2["births"] == 1


def test_chains_and_drift(series):
    steps = [0, 100, 1000]
    df = lin.chains(steps, series, _matches(series))
    # every live feature at every step is in exactly one chain
    assert len(df) == 16 + 20 + 20
    assert not df.duplicated(["checkpoint", "feature"]).any()
    spans = df.groupby("chain")["checkpoint"].nunique()
    assert (spans == 3).sum() == 11  # the kept ones and 13 → 3 → 3
    # drift: cosine to the final member, 1 at the final step, ≈ 0.97 for kept features at step 0
    last = df[df["checkpoint"] == 1000]
    np.testing.assert_allclose(last["drift_to_final"], 1.0, atol=1e-5)
    first = df[(df["checkpoint"] == 0) & df["feature"].between(0, 9)]
    np.testing.assert_allclose(first["drift_to_final"], 0.97, atol=0.01)
    # features whose chain ends before the final step have no drift
    assert df[(df["checkpoint"] == 0) & (df["feature"] == 15)]["drift_to_final"].isna().all()


def test_index_aligned_drift_sees_warm_start_only(series):
    d = lin.index_aligned_drift(series)
    assert d[1]["to_next"] == pytest.approx(1.0, abs=1e-5)  # copied with the same indices
    assert d[0]["to_next"] is None  # 16 vs 20 features: no index alignment
    assert d[2]["to_next"] is None and d[2]["to_final"] is None


def test_mix_origins_feature_by_feature(series):
    m01, _ = _matches(series)
    labels_a = {11: "ja", 12: "en", 13: "mix", 14: "ja", 15: "en", **{i: "ja" for i in range(10)}}
    labels_b = {2: "mix", 3: "mix", 4: "mix", 5: "mix", 6: "en", 0: "ja"}
    out = lin.mix_origins(m01, 0.5, labels_a, labels_b)
    assert out["n_mix"] == 4
    assert out["counts"] == {"merge_ja_en": 1, "from_mix": 1, "from_monolingual": 1,
                             "from_unlabelled": 0, "new": 1}
    assert sum(out["shares"].values()) == pytest.approx(1.0)
    # an earlier feature without a label counts as unlabelled, not as a language
    out = lin.mix_origins(m01, 0.5, {}, labels_b)
    assert out["counts"]["from_unlabelled"] == 3 and out["counts"]["new"] == 1
