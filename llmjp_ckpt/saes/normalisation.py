"""Per-token input normalisation for TopK SAEs, as a registered SAELens architecture.

The study normalises every token's activation vector before the SAE sees it and trains and
reconstructs in that normalised space. SAELens cannot do this as it comes: its
``constant_norm_rescale`` / ``layer_norm`` options raise with TopK as soon as a latent dies
(the auxiliary loss refuses them), and its training target is always the raw input. So we
extend it through its own seam (``register_sae_class`` / ``register_sae_training_class``),
subclassing its TopK classes:

- ``none``: identity;
- ``scalar``: ``x / ||x||`` (unit L2 norm per token);
- ``standardization``: ``(x - mean(x)) / std(x)`` across the hidden dimensions.

Both norms are idempotent (normalising a normalised token changes nothing), which is what
lets the training class normalise the target once and still call SAELens' own forward pass.

- The *training* SAE encodes and decodes in the normalised space, and its MSE target is the
  normalised input.
- The *inference* SAE (what ``SAE.load_from_disk`` returns) normalises in ``process_sae_in``
  and keeps each token's norm (or mean and std); ``decode`` right after ``encode`` restores
  them, so ``sae.decode(sae.encode(x))`` — what HookedSAETransformer and SAELens' CE/KL evals
  splice in — is in the model's space. ``reconstruct_normalized`` gives the normalised-space
  reconstruction for metrics.

Importing :mod:`llmjp_ckpt` registers the architecture, so saved SAEs load back with
``SAE.load_from_disk`` afterwards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput
from sae_lens.saes.topk_sae import (
    TopKSAE,
    TopKSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
    act_times_W_dec,
)

ARCHITECTURE = "topk_token_norm"
MODES = ("none", "scalar", "standardization")
Mode = Literal["none", "scalar", "standardization"]
EPS = 1e-6


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"token_norm must be one of {MODES}, got {mode!r}")
    return mode


def normalize(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Normalise each token (last dimension); return ``(x_normed, shift, scale)``.

    ``x == x_normed * scale + shift``. Scales are clamped at :data:`EPS` (not added to), so a
    normalised token normalises to itself.
    """
    if mode == "none":
        return x, torch.zeros_like(x[..., :1]), torch.ones_like(x[..., :1])
    if mode == "scalar":
        scale = x.norm(dim=-1, keepdim=True).clamp_min(EPS)
        return x / scale, torch.zeros_like(scale), scale
    if mode == "standardization":
        shift = x.mean(dim=-1, keepdim=True)
        centred = x - shift
        scale = centred.pow(2).mean(dim=-1, keepdim=True).sqrt().clamp_min(EPS)
        return centred / scale, shift, scale
    raise ValueError(f"token_norm must be one of {MODES}, got {mode!r}")


def restore(x_normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalize`."""
    return x_normed * scale + shift


@dataclass
class TokenNormTopKSAEConfig(TopKSAEConfig):
    """Inference config: a TopK SAE whose input is normalised per token (``token_norm``)."""

    token_norm: str = "none"

    def __post_init__(self) -> None:
        super().__post_init__()
        check_mode(self.token_norm)

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TokenNormTopKSAE(TopKSAE):
    """Inference TopK SAE: normalises in ``process_sae_in``, restores after ``decode``."""

    cfg: TokenNormTopKSAEConfig  # type: ignore[assignment]

    def _setup_activation_normalization(self) -> None:
        # SAELens' own seam for run-time normalisation: the "in" function runs inside
        # process_sae_in, the "out" function at the end of decode.
        def norm_in(x: torch.Tensor) -> torch.Tensor:
            xn, self._tok_shift, self._tok_scale = normalize(x, self.cfg.token_norm)
            return xn

        def norm_out(x: torch.Tensor) -> torch.Tensor:
            shift, scale = getattr(self, "_tok_shift", None), getattr(self, "_tok_scale", None)
            if shift is None or scale is None or scale.shape[:-1] != x.shape[:-1]:
                return x  # decode without a matching encode: stays in the normalised space
            return restore(x, shift, scale)

        self.run_time_activation_norm_fn_in = norm_in
        self.run_time_activation_norm_fn_out = norm_out

    @torch.no_grad()
    def reconstruct_normalized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_normed, reconstruction_normed, feature_acts)``: the space the SAE was trained in."""
        feats = self.encode(x)
        xn = normalize(x.to(self.dtype), self.cfg.token_norm)[0]
        rec = act_times_W_dec(feats, self.W_dec, self.cfg.rescale_acts_by_decoder_norm) + self.b_dec
        return xn, rec, feats


@dataclass
class TokenNormTopKTrainingSAEConfig(TopKTrainingSAEConfig):
    """Training config: TopK with per-token normalisation; the MSE target is normalised too."""

    token_norm: str = "none"

    def __post_init__(self) -> None:
        check_mode(self.token_norm)
        super().__post_init__()

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TokenNormTopKTrainingSAE(TopKTrainingSAE):
    """Training TopK SAE in the normalised space (input, reconstruction and target)."""

    cfg: TokenNormTopKTrainingSAEConfig  # type: ignore[assignment]

    def _setup_activation_normalization(self) -> None:
        # Normalise on the way in, never restore: training lives in the normalised space.
        self.run_time_activation_norm_fn_in = lambda x: normalize(x, self.cfg.token_norm)[0]
        self.run_time_activation_norm_fn_out = lambda x: x

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        # The base pass compares the reconstruction with step_input.sae_in: hand it the
        # normalised input (normalising it again inside encode is a no-op).
        xn = normalize(step_input.sae_in.to(self.dtype), self.cfg.token_norm)[0]
        return super().training_forward_pass(replace(step_input, sae_in=xn))


def register() -> None:
    """Register the architecture with SAELens (idempotent)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, TokenNormTopKSAE, TokenNormTopKSAEConfig)
    if ARCHITECTURE not in SAE_TRAINING_CLASS_REGISTRY:
        register_sae_training_class(ARCHITECTURE, TokenNormTopKTrainingSAE, TokenNormTopKTrainingSAEConfig)


register()
