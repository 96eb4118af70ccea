"""Matching two SAEs: planted pairs, exactness against scipy, mutual neighbours, bad input, CLI."""

from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from llmjp_ckpt.cli import main
from llmjp_ckpt.compare.decoders import load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, match_unit
from llmjp_ckpt.errors import UserError
from tests.compare_builders import planted, unit, write_sae


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("method", ["sparse", "exact"])
def test_planted_pairs_recovered_and_fresh_unmatched(tmp_path, method):
    A, B, truth = planted(1000, 128, frac=0.6, cos=0.9, seed=1)
    a, b = write_sae(tmp_path / "a", A), write_sae(tmp_path / "b", B)
    r = match_decoders(load_decoder(a), load_decoder(b), MatchConfig(method=method, block_rows=256))
    assert r.method == method
    planted_rows = truth >= 0
    recovered = (r.partner == truth) & r.shared & planted_rows
    assert recovered.sum() >= 0.99 * planted_rows.sum()
    wrong = r.shared & planted_rows & (r.partner != truth)
    assert wrong.sum() == 0
    assert not r.shared[~planted_rows].any()  # fresh features of A: reported unmatched
    fresh_b = np.setdiff1d(np.arange(1000), truth[planted_rows])
    assert (r.partner_of_b()[fresh_b] == -1).all()  # fresh features of B too
    assert r.shared_fraction == pytest.approx(recovered.sum() / 1000)
    np.testing.assert_allclose(r.similarity[recovered], 0.9, atol=1e-4)


def test_fast_matcher_within_0_1_percent_of_exact_hungarian_at_4096():
    A, B, _ = planted(4096, 256, frac=0.6, cos=0.9, seed=2)
    cfg = MatchConfig(method="sparse", min_similarity=0.0)
    r = match_unit(A, B, cfg)
    m = np.flatnonzero(r["partner"] >= 0)
    S = (A @ B.T).double().numpy()
    assert len(set(r["partner"][m].tolist())) == m.size  # one-to-one
    fast_total = S[m, r["partner"][m]].sum()
    gain = np.clip(S, 0.0, None)  # the same objective: a pair is worth max(cosine, 0)
    ri, ci = linear_sum_assignment(gain, maximize=True)
    exact_total = gain[ri, ci].sum()
    assert fast_total >= 0.999 * exact_total
    assert fast_total <= exact_total + 1e-6


def test_hand_set_case_prefers_total_over_greedy():
    # greedy would take (0,0)=0.9 and leave row 1 with 0.1; the optimum is 0.8 + 0.8
    A = unit(torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    S = torch.tensor([[0.9, 0.8], [0.8, 0.1]])
    for method in ("sparse", "exact"):
        # decoders are not needed for the assignment: feed unit rows whose products are S
        Bm = torch.linalg.lstsq(A, S).solution.T
        r = match_unit(A, Bm, MatchConfig(method=method, top_k=2), method=method)
        assert r["partner"].tolist() == [1, 0], method


def test_mutual_nearest_neighbours_match_brute_force():
    g = torch.Generator().manual_seed(3)
    A, B = unit(torch.randn(300, 16, generator=g)), unit(torch.randn(250, 16, generator=g))
    S = (A @ B.T).numpy()
    row_best, col_best = S.argmax(1), S.argmax(0)
    expected = col_best[row_best] == np.arange(300)
    for method in ("sparse", "exact"):
        r = match_unit(A, B, MatchConfig(method=method, block_rows=64))
        assert (r["nearest"] == row_best).all()
        assert (r["mutual"] == expected).all()


def test_sparse_equals_exact_on_structured_case():
    A, B, _ = planted(500, 64, frac=0.8, cos=0.85, seed=4)
    cfg = MatchConfig(block_rows=100)
    s, e = match_unit(A, B, cfg, method="sparse"), match_unit(A, B, cfg, method="exact")
    shared_s = (s["partner"] >= 0) & (s["similarity"] >= 0.7)
    shared_e = (e["partner"] >= 0) & (e["similarity"] >= 0.7)
    assert (shared_s == shared_e).all()
    assert (s["partner"][shared_s] == e["partner"][shared_e]).all()


def test_different_width_or_hook_is_a_clear_error(tmp_path):
    a = load_decoder(write_sae(tmp_path / "a", torch.randn(8, 16)))
    b = load_decoder(write_sae(tmp_path / "b", torch.randn(8, 12)))
    c = load_decoder(write_sae(tmp_path / "c", torch.randn(8, 16), hook="blocks.1.hook_resid_post",
                               hook_in_metadata=False))
    with pytest.raises(UserError, match="d_in=12"):
        match_decoders(a, b)
    with pytest.raises(UserError, match="blocks.1.hook_resid_post"):
        match_decoders(a, c)


def test_nan_weights_are_a_clear_error(tmp_path):
    W = torch.randn(8, 16)
    W[3, 2] = float("nan")
    with pytest.raises(UserError, match="NaN/inf values in 1 of 8"):
        load_decoder(write_sae(tmp_path / "a", W))


def test_missing_files_are_a_clear_error(tmp_path):
    with pytest.raises(UserError, match="sae_weights.safetensors: missing"):
        load_decoder(tmp_path)


def test_all_dead_sae_matches_nothing(tmp_path):
    W = unit(torch.randn(20, 16))
    a = load_decoder(write_sae(tmp_path / "a", W))
    dead = load_decoder(write_sae(tmp_path / "b", W.clone(), log_sparsity=torch.full((20,), -10.0)))
    assert not dead.alive.any()
    r = match_decoders(a, dead)
    assert r.shared_fraction == 0.0 and (r.partner == -1).all() and r.method == "none"
    # partly dead: an identical copy matches only its live features
    ls = torch.full((20,), -2.0)
    ls[:5] = -10.0
    part = load_decoder(write_sae(tmp_path / "c", W.clone(), log_sparsity=ls))
    r = match_decoders(a, part)
    assert (r.partner[5:] == np.arange(5, 20)).all() and (r.partner[:5] == -1).all()
    assert r.shared_fraction == pytest.approx(15 / 20)


def test_saelens_saved_folder_round_trip(tmp_path):
    from sae_lens import TopKSAE, TopKSAEConfig

    cfg = TopKSAEConfig(d_in=16, d_sae=32, k=4)
    cfg.metadata.hook_name = "blocks.0.hook_resid_post"
    sae = TopKSAE(cfg)
    sae.save_model(tmp_path / "sae")
    with pytest.raises(UserError, match=r"firing_counts\.safetensors: not found"):
        load_decoder(tmp_path / "sae")  # our SAEs carry firing counts; an older folder is refused
    dec = load_decoder(tmp_path / "sae", require_counts=False)  # `llmjp-ckpt match` on others' SAEs
    assert dec.alive.all() and dec.weights_hash
    torch.testing.assert_close(dec.W_dec, sae.W_dec.detach().float())
    assert dec.hook_name == "blocks.0.hook_resid_post"


def test_match_cli_writes_one_row_per_feature_of_a(tmp_path, capsys):
    A, B, truth = planted(200, 64, frac=0.6, cos=0.9, seed=5)
    a, b = write_sae(tmp_path / "a", A), write_sae(tmp_path / "b", B)
    out = tmp_path / "m.csv"
    assert main(["match", str(a), str(b), "--out", str(out), "--threshold", "0.8"]) == 0
    assert "(60.0%) at cosine ≥ 0.8" in capsys.readouterr().out
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [int(r["feature_a"]) for r in rows] == list(range(200))
    assert {"feature_a", "feature_b", "similarity"} <= set(rows[0])
    for r, t in zip(rows, truth):
        assert r["feature_b"] == ("" if t < 0 else str(t))
    bad = write_sae(tmp_path / "bad", torch.randn(10, 32))
    assert main(["match", str(a), str(bad), "--out", str(tmp_path / "x.csv")]) == 2
    assert "d_in=32" in capsys.readouterr().err
