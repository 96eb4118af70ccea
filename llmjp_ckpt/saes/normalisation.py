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
  and keeps no state: ``encode`` and ``decode`` work in the normalised space, ``sae(x)`` (its
  forward, what HookedSAETransformer and our CE/KL splice call) computes each token's norm (or
  mean and std) from the ``x`` it replaces and returns the reconstruction in the model's space,
  and ``decode_with(feats, shift, scale)`` restores scales given explicitly. A ``decode`` can
  never pick up the scales of an earlier ``encode`` of another batch.
  ``reconstruct_normalised`` gives the normalised-space reconstruction for metrics.
- Initialisation (training config fields, the study's choice on in ``configs/paper/``):
  ``tied_encoder_init`` sets ``W_enc = W_dec^T`` after SAELens' init;
  ``b_dec_init: geometric_median`` sets ``b_dec`` to the geometric median of a seeded sample of
  normalised training activations (:func:`geometric_median`, Weiszfeld iterations; the sample
  is drawn by ``llmjp_ckpt.saes.training``).

Importing :mod:`llmjp_ckpt` registers the architecture, so saved SAEs load back with
``SAE.load_from_disk`` afterwards.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import torch
from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput, _disable_hooks
from sae_lens.saes.topk_sae import (
    TopKSAE,
    TopKSAEConfig,
    TopKTrainingSAE,
    TopKTrainingSAEConfig,
    act_times_W_dec,
)

ARCHITECTURE = "topk_token_norm"
MODES = ("none", "scalar", "standardization")
B_DEC_INITS = ("zeros", "geometric_median")
Mode = Literal["none", "scalar", "standardization"]
EPS = 1e-6


def check_mode(mode: str) -> str:
    """Return ``mode`` if it is one of :data:`MODES`, else raise ``ValueError``."""
    if mode not in MODES:
        raise ValueError(f"normalisation must be one of {MODES}, got {mode!r}")
    return mode


def normalise(x: torch.Tensor, mode: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
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
    raise ValueError(f"normalisation must be one of {MODES}, got {mode!r}")


def geometric_median(points: torch.Tensor, max_iter: int = 200, tol: float = 1e-7) -> torch.Tensor:
    """The point minimising the summed Euclidean distance to ``points`` [n, d] (Weiszfeld).

    Computed in float64 from the mean; distances are clamped at 1e-12 so an iterate that lands
    on a data point does not divide by zero.
    """
    x = points.double()
    y = x.mean(0)
    for _ in range(max_iter):
        w = 1.0 / (x - y).norm(dim=-1).clamp_min(1e-12)
        nxt = (w[:, None] * x).sum(0) / w.sum()
        done = (nxt - y).norm() <= tol * max(1.0, y.norm().item())
        y = nxt
        if done:
            break
    return y.to(points.dtype)


OLD_KEY = "token_norm"  # cfg.json key of SAEs saved before the rename to ``normalisation``


def with_current_key(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """A cfg.json dict with the old ``token_norm`` key renamed to ``normalisation``."""
    out = dict(cfg)
    if OLD_KEY in out:
        old = out.pop(OLD_KEY)
        out.setdefault("normalisation", old)
    return out


def mode_of(cfg: Mapping[str, Any]) -> str:
    """The normalisation mode recorded in an SAE's cfg.json dict (either key), else SAELens'
    ``normalize_activations``, else ``none``."""
    cfg = with_current_key(cfg)
    return str(cfg.get("normalisation") or cfg.get("normalize_activations") or "none")


def _take_old_key(cfg: TokenNormTopKSAEConfig | TokenNormTopKTrainingSAEConfig) -> None:
    # SAELens builds configs from cfg.json keeping only dataclass fields, so the old key must
    # be a field to be read at all; it moves into ``normalisation`` here.
    if cfg.token_norm is not None:
        if cfg.normalisation == "none":
            cfg.normalisation = cfg.token_norm
        cfg.token_norm = None
    check_mode(cfg.normalisation)


def _without_old_key(d: dict[str, Any]) -> dict[str, Any]:
    d.pop(OLD_KEY, None)
    return d


def restore(x_normed: torch.Tensor, shift: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Undo :func:`normalise`."""
    return x_normed * scale + shift


@dataclass
class TokenNormTopKSAEConfig(TopKSAEConfig):
    """Inference config: a TopK SAE whose input is normalised per token (``normalisation``)."""

    normalisation: str = "none"
    """Per-token normalisation mode (:data:`MODES`); cfg.json's key (formerly ``token_norm``)."""
    token_norm: str | None = field(default=None, repr=False)
    """Read-only: the old cfg.json key, moved into ``normalisation`` and never written."""

    def __post_init__(self) -> None:
        super().__post_init__()
        _take_old_key(self)

    def to_dict(self) -> dict[str, Any]:
        return _without_old_key(super().to_dict())

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TokenNormTopKSAE(TopKSAE):
    """Inference TopK SAE: normalises in ``process_sae_in``; ``forward`` restores from its input."""

    cfg: TokenNormTopKSAEConfig  # type: ignore[assignment]

    def _setup_activation_normalization(self) -> None:
        # SAELens' own seam for run-time normalisation: the "in" function runs inside
        # process_sae_in, the "out" function at the end of decode. Stateless on purpose: the
        # scales come from the input in forward(), never from an earlier encode().
        self.run_time_activation_norm_fn_in = lambda x: normalise(x, self.cfg.normalisation)[0]
        self.run_time_activation_norm_fn_out = lambda x: x

    def decode_with(self, feature_acts: torch.Tensor, shift: torch.Tensor,
                    scale: torch.Tensor) -> torch.Tensor:
        """Decode and restore the given per-token ``shift`` / ``scale`` (from :func:`normalise`)."""
        return restore(self.decode(feature_acts), shift, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Reconstruction of ``x`` in the model's space, each token rescaled by its own norm."""
        # Overrides SAE.forward (same hooks, same error term) so the splice restores the scales
        # of the very activation it replaces.
        _, shift, scale = normalise(x.to(self.dtype), self.cfg.normalisation)
        sae_out = self.decode_with(self.encode(x), shift, scale)
        if self.use_error_term:
            with torch.no_grad(), _disable_hooks(self):
                clean = self.decode_with(self.encode(x), shift, scale)
            sae_out = sae_out + self.hook_sae_error(x - clean)
        return self.hook_sae_output(sae_out)

    @torch.no_grad()
    def reconstruct_normalised(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_normed, reconstruction_normed, feature_acts)``: the space the SAE was trained in."""
        feats = self.encode(x)
        xn = normalise(x.to(self.dtype), self.cfg.normalisation)[0]
        rec = act_times_W_dec(feats, self.W_dec, self.cfg.rescale_acts_by_decoder_norm) + self.b_dec
        return xn, rec, feats


@dataclass
class TokenNormTopKTrainingSAEConfig(TopKTrainingSAEConfig):
    """Training config: TopK with per-token normalisation; the MSE target is normalised too."""

    normalisation: str = "none"
    """Per-token normalisation mode (:data:`MODES`); cfg.json's key (formerly ``token_norm``)."""
    token_norm: str | None = field(default=None, repr=False)
    """Read-only: the old cfg.json key, moved into ``normalisation`` and never written."""
    b_dec_init: str = "zeros"
    """``zeros`` (SAELens' init) or ``geometric_median`` of a seeded sample of normalised acts."""
    b_dec_init_tokens: int = 16384
    """Activations in the geometric-median sample (drawn by llmjp_ckpt.saes.training)."""
    tied_encoder_init: bool = False
    """Set ``W_enc = W_dec^T`` after SAELens' initialisation (the study's init)."""

    def __post_init__(self) -> None:
        _take_old_key(self)
        if self.b_dec_init not in B_DEC_INITS:
            raise ValueError(f"b_dec_init must be one of {B_DEC_INITS}, got {self.b_dec_init!r}")
        if not isinstance(self.b_dec_init_tokens, int) or self.b_dec_init_tokens < 1:
            raise ValueError(f"b_dec_init_tokens must be >= 1, got {self.b_dec_init_tokens!r}")
        super().__post_init__()

    def to_dict(self) -> dict[str, Any]:
        return _without_old_key(super().to_dict())

    def get_inference_sae_cfg_dict(self) -> dict[str, Any]:
        # what the trainer writes as the saved SAE's cfg.json
        return _without_old_key(super().get_inference_sae_cfg_dict())

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


class TokenNormTopKTrainingSAE(TopKTrainingSAE):
    """Training TopK SAE in the normalised space (input, reconstruction and target)."""

    cfg: TokenNormTopKTrainingSAEConfig  # type: ignore[assignment]

    def _setup_activation_normalization(self) -> None:
        # Normalise on the way in, never restore: training lives in the normalised space.
        self.run_time_activation_norm_fn_in = lambda x: normalise(x, self.cfg.normalisation)[0]
        self.run_time_activation_norm_fn_out = lambda x: x

    def initialize_weights(self) -> None:
        # SAELens 6.54 happens to tie W_enc to W_dec^T at init too; the study's init is made
        # explicit here so it does not hang on a library default.
        super().initialize_weights()
        if self.cfg.tied_encoder_init:
            with torch.no_grad():
                self.W_enc.data = self.W_dec.data.T.clone().contiguous()

    @torch.no_grad()
    def init_b_dec_geometric_median(self, acts: torch.Tensor) -> torch.Tensor:
        """Set ``b_dec`` to the geometric median of ``acts`` [..., d_in] after normalisation."""
        xn = normalise(acts.to(self.b_dec.device, self.dtype), self.cfg.normalisation)[0]
        median = geometric_median(xn.reshape(-1, self.cfg.d_in))
        self.b_dec.data.copy_(median.to(self.b_dec.dtype))
        return self.b_dec.data

    def training_forward_pass(self, step_input: TrainStepInput) -> TrainStepOutput:
        # The base pass compares the reconstruction with step_input.sae_in: hand it the
        # normalised input (normalising it again inside encode is a no-op).
        xn = normalise(step_input.sae_in.to(self.dtype), self.cfg.normalisation)[0]
        return super().training_forward_pass(replace(step_input, sae_in=xn))


def register() -> None:
    """Register the architecture with SAELens (idempotent)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, TokenNormTopKSAE, TokenNormTopKSAEConfig)
    if ARCHITECTURE not in SAE_TRAINING_CLASS_REGISTRY:
        register_sae_training_class(ARCHITECTURE, TokenNormTopKTrainingSAE, TokenNormTopKTrainingSAEConfig)


register()
