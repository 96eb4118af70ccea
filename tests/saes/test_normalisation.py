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
    normalize,
    restore,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def build_training_sae(mode: str, d_in: int = 16, d_sae: int = 64, k: int = 4, **kw) -> TokenNormTopKTrainingSAE:
    sae = TokenNormTopKTrainingSAE(TokenNormTopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, token_norm=mode, **kw))
    with torch.no_grad():  # break the tied init so decode is not a mirror of encode
        sae.b_dec.normal_(0, 0.1)
        sae.W_dec.mul_(torch.rand(d_sae, 1) + 0.5)
    return sae


def acts(n: int = 40, d: int = 16) -> torch.Tensor:
    return torch.randn(n, d) * torch.rand(n, 1) * 20 + 3


@pytest.mark.parametrize("mode", MODES)
def test_normalize_restores_and_is_idempotent(mode):
    x = acts()
    xn, shift, scale = normalize(x, mode)
    torch.testing.assert_close(restore(xn, shift, scale), x)
    torch.testing.assert_close(normalize(xn, mode)[0], xn, atol=1e-6, rtol=1e-5)


def test_scalar_and_standardization_statistics():
    x = acts()
    torch.testing.assert_close(normalize(x, "scalar")[0].norm(dim=-1), torch.ones(len(x)))
    z = normalize(x, "standardization")[0]
    torch.testing.assert_close(z.mean(-1), torch.zeros(len(x)), atol=1e-5, rtol=0)
    torch.testing.assert_close(z.pow(2).mean(-1), torch.ones(len(x)))
    with pytest.raises(ValueError):
        normalize(x, "layernorm")


@pytest.mark.parametrize("mode", MODES)
def test_save_load_round_trip_encodes_identically(mode, tmp_path):
    sae = build_training_sae(mode)
    sae.save_inference_model(tmp_path)
    loaded = SAE.load_from_disk(tmp_path)
    assert isinstance(loaded, TokenNormTopKSAE) and loaded.cfg.architecture() == ARCHITECTURE
    assert loaded.cfg.token_norm == mode
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
    _xn, shift, scale = normalize(x, mode)
    expected = restore(sae.decode(sae.encode(x)), shift, scale)  # training SAE decodes in the normalised space
    torch.testing.assert_close(loaded.decode(loaded.encode(x)), expected, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(loaded(x), expected, atol=1e-4, rtol=1e-4)
    _, rec_n, _ = loaded.reconstruct_normalized(x)
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
    xn = normalize(x, mode)[0]
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
    step = TrainStepInput(sae_in=acts(), coefficients={}, dead_neuron_mask=dead, n_training_steps=0, is_logging_step=False)
    out = sae.training_forward_pass(step)
    assert out.losses["auxiliary_reconstruction_loss"].item() > 0


def test_unknown_mode_rejected():
    with pytest.raises(ValueError, match="token_norm"):
        TokenNormTopKTrainingSAEConfig(d_in=4, d_sae=8, k=2, token_norm="l2")
