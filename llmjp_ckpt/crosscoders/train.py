"""Train a crosscoder with SAELens' own ``SAETrainer`` fed by an ``Iterator[Tensor]``.

The stream yields ``[batch_tokens, n_blocks * d]`` concatenations (see :mod:`.stream`); the
trainer neither knows nor cares that they come from several checkpoints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.crosscoders.architecture import CrosscoderTrainingSAE, CrosscoderTrainingSAEConfig
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.seeding import seed_everything


@dataclass
class CrosscoderConfig:
    """One crosscoder over the checkpoints of a run (``configs/crosscoder/*.yaml``)."""

    steps: list[int] | None = None
    """Checkpoints it spans (``None``: every step with an SAE in the run)."""
    expansion: int = 4
    """Latents = expansion x the model's d_model (one block's width)."""
    k: int = 16
    """Active latents per token (TopK, ranked by activation x decoder-norm sum)."""
    lr: float = 1e-3
    """Adam learning rate."""
    lr_warm_up_steps: int = 20
    """Linear warm-up steps."""
    training_tokens: int = 200_000
    """Tokens of the train split seen (each seen once per checkpoint at the same positions)."""
    batch_tokens: int = 1024
    """Tokens per training step."""
    batch_windows: int = 32
    """Windows per model forward while streaming activations."""
    dead_feature_window: int = 50
    """Steps without firing before a latent counts as dead for SAELens' aux loss (< run length)."""
    aux_loss_coefficient: float = 1.0
    """SAELens' TopK auxiliary loss coefficient."""
    seed: int = 0
    """Seeds initialisation and the stream's shuffle."""
    device: str = "cpu"
    """Device of the models and the crosscoder (not part of any result hash)."""
    present: float = 0.5
    """A latent is present at a checkpoint when its decoder norm there is >= this x its maximum."""
    absent: float = 0.15
    """... and absent when below this x its maximum."""
    sae_id: str = "crosscoder"
    """Folder name under RUN/crosscoders/."""
    labels: bool = True
    """Label the latents (language, granularity) from their top-N test windows (crosscoders.labels)."""
    n_top: int = 50
    """Top test windows kept per latent for its labels (the study's 50)."""
    label_windows: int | None = None
    """Use only the first N test windows for the labels (None: all)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Further TopK training-config fields for SAELens (e.g. decoder_init_norm)."""

    def __post_init__(self) -> None:
        for name in ("expansion", "k", "training_tokens", "batch_tokens", "batch_windows", "n_top"):
            val = getattr(self, name)
            if not isinstance(val, int) or isinstance(val, bool) or val < 1:
                raise UserError(f"crosscoder config: {name} {val!r}: expected a positive integer")
        if self.training_tokens < self.batch_tokens:
            raise UserError(f"crosscoder config: training_tokens {self.training_tokens} is less "
                            f"than one batch ({self.batch_tokens})")
        n_steps = self.training_tokens // self.batch_tokens
        if self.dead_feature_window >= n_steps:
            raise UserError(f"crosscoder config: dead_feature_window {self.dead_feature_window} "
                            f"is not shorter than the run ({n_steps} steps): the aux loss would "
                            "never switch on")
        if self.label_windows is not None and (not isinstance(self.label_windows, int) or self.label_windows < 1):
            raise UserError(f"crosscoder config: label_windows {self.label_windows!r}: expected >= 1 or null")
        if not 0 <= self.absent < self.present <= 1:
            raise UserError(f"crosscoder config: expected 0 <= absent ({self.absent}) < present "
                            f"({self.present}) <= 1")


def train_crosscoder(stream: Iterator[torch.Tensor], n_blocks: int, d_block: int,
                     cfg: CrosscoderConfig, out: str | Path,
                     block_names: list[str] | None = None) -> Path:
    """Train on ``stream`` and save the inference crosscoder into ``out`` (whole or not at all)."""
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    seed_everything(cfg.seed)
    sae_cfg = CrosscoderTrainingSAEConfig(
        d_in=n_blocks * d_block, d_sae=cfg.expansion * d_block, k=cfg.k, dtype="float32",
        device=cfg.device, n_blocks=n_blocks, block_names=list(block_names or []),
        aux_loss_coefficient=cfg.aux_loss_coefficient, **cfg.extra,
    )
    sae = CrosscoderTrainingSAE(sae_cfg)
    trainer_cfg = SAETrainerConfig(
        total_training_samples=cfg.training_tokens, train_batch_size_samples=cfg.batch_tokens,
        lr=cfg.lr, lr_end=cfg.lr, lr_warm_up_steps=cfg.lr_warm_up_steps, device=cfg.device,
        dead_feature_window=cfg.dead_feature_window,
        feature_sampling_window=max(cfg.training_tokens // cfg.batch_tokens, 1),
        logger=LoggingConfig(log_to_wandb=False),
    )
    trained = SAETrainer(cfg=trainer_cfg, sae=sae, data_provider=stream).fit()
    out = Path(out)
    with atomic.atomic_dir(out) as tmp:
        trained.save_inference_model(str(tmp))
    return out
