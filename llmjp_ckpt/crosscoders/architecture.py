"""An acausal crosscoder over N checkpoints as a registered SAELens TopK architecture.

One dictionary for the layer-L activations of N checkpoints at the same tokens: each latent has
one encoder over the concatenated activations ``[x_1 | ... | x_N]`` (each block scaled to unit
norm per token by the stream) and one decoder block per checkpoint. Latents are ranked by
activation x the *sum of their per-checkpoint decoder norms* (Anthropic's crosscoder penalty,
used as the TopK ranking as in "Crosscoding Through Time"), so a latent that exists at one
checkpoint only competes on that block alone.

SAELens 6.54 has no crosscoder; its TopK SAE already ranks by ``pre x ||W_dec_i||`` when
``rescale_acts_by_decoder_norm`` is on and folds that norm into the weights on saving. We extend
it through its registry (``register_sae_class`` / ``register_sae_training_class``) and replace
that one norm by the block-norm sum (:func:`block_norm_sum`); everything else (trainer, aux loss,
saving, loading) is SAELens' own. ``cfg.json`` names the blocks (``block_names``: the steps).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from sae_lens.registry import (
    SAE_CLASS_REGISTRY,
    SAE_TRAINING_CLASS_REGISTRY,
    register_sae_class,
    register_sae_training_class,
)
from sae_lens.saes.topk_sae import TopKSAE, TopKSAEConfig, TopKTrainingSAE, TopKTrainingSAEConfig

ARCHITECTURE = "crosscoder_topk"


def block_norm_sum(W_dec: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Per latent, the sum over checkpoints of its decoder block's L2 norm: ``[d_sae]``."""
    return W_dec.view(W_dec.shape[0], n_blocks, -1).norm(dim=-1).sum(-1).clamp_min(1e-8)


def block_norms(W_dec: torch.Tensor, n_blocks: int) -> torch.Tensor:
    """Per latent and checkpoint, the decoder block's L2 norm: ``[d_sae, n_blocks]``."""
    return W_dec.view(W_dec.shape[0], n_blocks, -1).norm(dim=-1)


def _check_blocks(d_in: int, n_blocks: int, names: list[str]) -> None:
    if n_blocks < 1 or d_in % n_blocks:
        raise ValueError(f"crosscoder: d_in {d_in} is not n_blocks {n_blocks} equal blocks")
    if names and len(names) != n_blocks:
        raise ValueError(f"crosscoder: {len(names)} block_names for {n_blocks} blocks")


class _BlockNormRanking:
    """What both classes change in SAELens' TopK: the decoder norm is the block-norm sum."""

    cfg: CrosscoderSAEConfig | CrosscoderTrainingSAEConfig
    W_dec: torch.nn.Parameter

    def get_W_dec_norm(self) -> torch.Tensor:
        # The one norm SAELens uses for ranking and for folding on save.
        return block_norm_sum(self.W_dec, self.cfg.n_blocks)

    def _pre_and_acts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        sae_in = self.process_sae_in(x)  # type: ignore[attr-defined]
        hidden_pre = self.hook_sae_acts_pre(sae_in @ self.W_enc + self.b_enc)  # type: ignore[attr-defined]
        if self.cfg.rescale_acts_by_decoder_norm:
            hidden_pre = hidden_pre * self.get_W_dec_norm()
        return self.hook_sae_acts_post(self.activation_fn(hidden_pre)), hidden_pre  # type: ignore[attr-defined]

    def decode(self, feature_acts: torch.Tensor) -> torch.Tensor:
        if self.cfg.rescale_acts_by_decoder_norm:
            feature_acts = feature_acts / self.get_W_dec_norm()
        out = self.hook_sae_recons(feature_acts @ self.W_dec + self.b_dec)  # type: ignore[attr-defined]
        return self.reshape_fn_out(self.run_time_activation_norm_fn_out(out), self.d_head)  # type: ignore[attr-defined]


@dataclass
class _BlockFields:
    """The fields both configs add: how many checkpoint blocks ``d_in`` holds, and their names."""

    n_blocks: int = 1
    block_names: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        super().__post_init__()  # type: ignore[misc]  # SAELens' own config checks
        _check_blocks(self.d_in, self.n_blocks, self.block_names)  # type: ignore[attr-defined]

    @classmethod
    def architecture(cls) -> str:
        return ARCHITECTURE


@dataclass
class CrosscoderSAEConfig(_BlockFields, TopKSAEConfig):
    """Inference config: ``d_in = n_blocks x block size``; ``block_names`` label the blocks."""


class CrosscoderSAE(_BlockNormRanking, TopKSAE):
    """Inference crosscoder: TopK ranked by activation x block-norm sum."""

    cfg: CrosscoderSAEConfig  # type: ignore[assignment]

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        return self._pre_and_acts(x)[0]

    def decoder_norms(self) -> torch.Tensor:
        """``[d_sae, n_blocks]``: each latent's decoder norm at each checkpoint."""
        return block_norms(self.W_dec.detach(), self.cfg.n_blocks)


@dataclass
class CrosscoderTrainingSAEConfig(_BlockFields, TopKTrainingSAEConfig):
    """Training config of :class:`CrosscoderTrainingSAE`."""


class CrosscoderTrainingSAE(_BlockNormRanking, TopKTrainingSAE):
    """Training crosscoder: SAELens' TopK training SAE with the block-norm-sum ranking."""

    cfg: CrosscoderTrainingSAEConfig  # type: ignore[assignment]

    def encode_with_hidden_pre(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._pre_and_acts(x)


def register() -> None:
    """Register the architecture with SAELens (idempotent)."""
    if ARCHITECTURE not in SAE_CLASS_REGISTRY:
        register_sae_class(ARCHITECTURE, CrosscoderSAE, CrosscoderSAEConfig)
    if ARCHITECTURE not in SAE_TRAINING_CLASS_REGISTRY:
        register_sae_training_class(ARCHITECTURE, CrosscoderTrainingSAE,
                                    CrosscoderTrainingSAEConfig)


register()
