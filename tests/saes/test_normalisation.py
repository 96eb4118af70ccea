"""Per-token normalisation as a registered SAELens architecture: maths, round trips, splicing."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from sae_lens import SAE
from sae_lens.saes.sae import TrainStepInput

import llmjp_ckpt  # noqa: F401  registers the architecture
from llmjp_ckpt.saes.normalisation import (
    ARCHITECTURE,
    MODES,
    TokenNormTopKSAE,
    TokenNormTopKTrainingSAE,
    TokenNormTopKTrainingSAEConfig,
    geometric_median,
    normalise,
    restore,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build_training_sae(mode: str, d_in: int = 16, d_sae: int = 64, k: int = 4, **kw) -> TokenNormTopKTrainingSAE:
    sae = TokenNormTopKTrainingSAE(
        TokenNormTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, normalisation=mode, **kw)
    )
    with torch.no_grad():  # break the tied init so decode is not a mirror of encode
        sae.b_dec.normal_(0, 0.1)
        sae.W_dec.mul_(torch.rand(d_sae, 1) + 0.5)
    return sae


def acts(n: int = 40, d: int = 16) -> torch.Tensor:
    return torch.randn(n, d) * torch.rand(n, 1) * 20 + 3


@pytest.mark.parametrize("mode", MODES)
def test_normalise_restores_and_is_idempotent(mode):
    x = acts()
    xn, shift, scale = normalise(x, mode)
    torch.testing.assert_close(restore(xn, shift, scale), x)
    torch.testing.assert_close(normalise(xn, mode)[0], xn, atol=1e-6, rtol=1e-5)


def test_scalar_and_standardization_statistics():
    x = acts()
    torch.testing.assert_close(normalise(x, "scalar")[0].norm(dim=-1), torch.ones(len(x)))
    z = normalise(x, "standardization")[0]
    torch.testing.assert_close(z.mean(-1), torch.zeros(len(x)), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(len(x)))
    with pytest.raises(ValueError):
        normalise(x, "layernorm")


@pytest.mark.parametrize("mode", MODES)
def test_save_load_round_trip_encodes_identically(mode, tmp_path):
    sae = build_training_sae(mode)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, TokenNormTopKSAE) and loaded.cfg.architecture() == ARCHITECTURE
    assert loaded.cfg.normalisation == mode
    x = acts()
    feats = loaded.encode(x)
    torch.testing.assert_close(feats, sae.encode(x), atol=1e-5, rtol=1e-5)
    assert int((feats != 0).sum(-1).max()) <= sae.cfg.k


@pytest.mark.parametrize("mode", MODES)
def test_spliced_output_is_in_model_space(mode, tmp_path):
    sae = build_training_sae(mode)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    x = acts()
    _xn, shift, scale = normalise(x, mode)
    expected = restore(sae.decode(sae.encode(x)), shift, scale)  # training SAE decodes in the normalised space
    torch.testing.assert_close(loaded(x), expected, atol=1e-4, rtol=1e-4)
    explicit = loaded.decode_with(loaded.encode(x), shift, scale)
    torch.testing.assert_close(explicit, expected, atol=1e-4, rtol=1e-4)
    _, rec_n, _ = loaded.reconstruct_normalised(x)
    torch.testing.assert_close(rec_n, sae.decode(sae.encode(x)), atol=1e-4, rtol=1e-4)


def test_scalar_sae_is_scale_equivariant_and_none_is_not(tmp_path):
    x = acts()
    out = {}
    for mode in ("none", "scalar", "standardization"):
        sae = build_training_sae(mode)
        sae.save_inference_model(tmp_path / mode)
        loaded = SAE.load_from_disk(tmp_path / mode)
        out[mode] = (loaded(x), loaded(7 * x + (2 if mode == "standardization" else 0)))
    torch.testing.assert_close(out["scalar"][1], 7 * out["scalar"][0], atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(out["standardization"][1], 7 * out["standardization"][0] + 2, atol=1e-3, rtol=1e-4)
    assert not torch.allclose(out["none"][1], 7 * out["none"][0], atol=1e-2)


@pytest.mark.parametrize("mode", ["scalar", "standardization"])
def test_training_target_is_the_normalised_input(mode):
    sae = build_training_sae(mode)
    x = acts()
    step = TrainStepInput(sae_in=x, coefficients={}, dead_neuron_mask=None, n_training_steps=0, is_logging_step=False)
    out = sae.training_forward_pass(step)
    xn = normalise(x, mode)[0]
    expected = (sae.decode(sae.encode(x)) - xn).pow(2).sum(-1).mean()
    torch.testing.assert_close(out.losses["mse_loss"], expected)
    # the loss does not see the token's scale
    out_big = sae.training_forward_pass(replace(step, sae_in=50 * x))
    torch.testing.assert_close(out_big.losses["mse_loss"], out.losses["mse_loss"], atol=1e-4, rtol=1e-4)


def test_topk_aux_loss_runs_with_dead_latents():
    """SAELens' own normalisations raise here; ours trains on."""
    sae = build_training_sae("scalar")
    dead = torch.zeros(sae.cfg.d_sae, dtype=torch.bool)
    dead[:10] = True
    step = TrainStepInput(
        sae_in=acts(),
        coefficients={},
        dead_neuron_mask=dead,
        n_training_steps=0,
        is_logging_step=False,
    )
    out = sae.training_forward_pass(step)
    assert out.losses["auxiliary_reconstruction_loss"].item() > 0


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="normalisation"):
        TokenNormTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2, normalisation="l2")


@pytest.mark.parametrize("mode", ["scalar", "standardization"])
def test_decode_cannot_use_stale_scales(mode, tmp_path):
    """decode after encoding another batch (same shape or not) gives the same normalised output."""
    sae = build_training_sae(mode)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    x, other = acts(), acts() * 50 + 7
    feats = loaded.encode(x)
    alone = loaded.decode(feats)
    loaded.encode(other)  # an unrelated encode of the same shape ...
    torch.testing.assert_close(loaded.decode(feats), alone)
    loaded.encode(other[:5])  # ... and of another shape
    torch.testing.assert_close(loaded.decode(feats), alone)
    normalised = sae.decode(sae.encode(x))  # the training SAE's output: normalised space
    torch.testing.assert_close(alone, normalised, atol=1e-4, rtol=1e-4)
    # forward rescales by the scales of its own input, whatever was encoded before
    _, shift, scale = normalise(x, mode)
    loaded.encode(other)
    torch.testing.assert_close(loaded(x), restore(alone, shift, scale), atol=1e-4, rtol=1e-4)
    kept = [v for v in vars(loaded).values() if isinstance(v, torch.Tensor)]
    assert not any(v.shape[:-1] == x.shape[:-1] for v in kept)  # no per-token state kept


def test_tied_encoder_init_and_geometric_median_b_dec():
    sae = build_training_sae("scalar", decoder_init_norm=None, tied_encoder_init=True)
    torch.manual_seed(1)
    tied = TokenNormTopKTrainingSAE(TokenNormTopKTrainingSAEConfig(
        d_in=16, d_sae=64, k=4, normalisation="scalar", decoder_init_norm=None,
        tied_encoder_init=True))
    torch.testing.assert_close(tied.W_enc, tied.W_dec.T, rtol=0, atol=0)
    normed = TokenNormTopKTrainingSAE(TokenNormTopKTrainingSAEConfig(
        d_in=16, d_sae=64, k=4, normalisation="scalar", decoder_init_norm=0.1,
        tied_encoder_init=True))
    torch.testing.assert_close(normed.W_enc, normed.W_dec.T, rtol=0, atol=0)
    torch.testing.assert_close(normed.W_dec.norm(dim=-1), torch.full((64,), 0.1))
    x = acts(200)
    b = sae.init_b_dec_geometric_median(x)
    torch.testing.assert_close(b, geometric_median(normalise(x, "scalar")[0]).float())
    with pytest.raises(ValueError, match="b_dec_init"):
        TokenNormTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2, b_dec_init="mean")


def _summed_distance(points: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return (points.double() - y.double()).norm(dim=-1).sum(-1)


def test_geometric_median_is_the_median_brute_force():
    """Against a brute-force grid search in 2-D, and local optimality in 16-D."""
    g = torch.Generator().manual_seed(3)
    pts = torch.cat([torch.randn(9, 2, generator=g), torch.tensor([[8.0, 8.0], [9.0, -7.0]])])
    med = geometric_median(pts)
    axis = torch.linspace(-3, 3, 601, dtype=torch.float64)
    grid = torch.stack(torch.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    cost = (pts.double()[None] - grid[:, None]).norm(dim=-1).sum(-1)
    best = grid[cost.argmin()]
    assert (med.double() - best).norm() < 0.02  # within two grid steps
    assert _summed_distance(pts, med) <= cost.min() + 1e-9
    assert (med.double() - pts.double().mean(0)).norm() > 0.5  # outliers pull the mean only
    # on the sphere of normalised tokens: no small move lowers the summed distance
    x = normalise(acts(300), "scalar")[0]
    m = geometric_median(x)
    base = _summed_distance(x, m)
    for _ in range(50):
        step = torch.randn(16, generator=g) * 1e-3
        assert _summed_distance(x, m + step) >= base - 1e-9
    # collinear odd case: the 1-D median is the middle point
    line = torch.tensor([[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]])
    torch.testing.assert_close(geometric_median(line), torch.tensor([1.0, 0.0]), atol=1e-4, rtol=0)
