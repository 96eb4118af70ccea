"""A split SAE step: the batch in ``m`` equal micro-batches, gradients summed, one Adam step.

SAELens' TopK loss is a mean over the batch of per-token terms (MSE summed over ``d_in``; the
aux loss with a scale fixed by the dead mask), so the sum of ``loss(chunk) x |chunk| / B`` over
equal chunks is the loss of the whole batch and its gradient is the one SAELens would take:
the update is SAELens' own (up to float summation order) while a step holds ``1/m`` of the
dense batch x d_sae tensors. Firing statistics (dead mask, act_freq_scores) are updated as
in ``SAETrainer._train_step``, once per step.

Seam: ``MultiSAETrainer.__init__`` builds one ``SAETrainer`` per SAE by the module-global name
``sae_lens.training.multi_sae_trainer.SAETrainer`` and offers no hook for the step itself;
:func:`split_steps` swaps that name for :class:`SplitStepTrainer` while a runner is built and
run. SAEs not named in the mapping step exactly as SAELens does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, ClassVar

import torch
from sae_lens.saes.sae import TrainStepInput, TrainStepOutput
from sae_lens.training import multi_sae_trainer
from sae_lens.training.sae_trainer import SAETrainer


class SplitStepTrainer(SAETrainer):
    """``SAETrainer`` whose step runs in ``micro_batches`` parts (1: SAELens' own step)."""

    micro_batches_by_id: ClassVar[dict[str, int]] = {}

    @property
    def micro_batches(self) -> int:
        sae_id = getattr(self.sae.cfg.metadata, "sae_id", None)
        return int(self.micro_batches_by_id.get(sae_id, 1)) if sae_id else 1

    def _train_step(self, sae: Any, sae_in: torch.Tensor) -> TrainStepOutput:
        m = self.micro_batches
        if m <= 1:
            return super()._train_step(sae, sae_in)
        sae.train()
        total = sae_in.shape[0]
        dead = self.dead_neurons
        coefficients = self.get_coefficients()
        logging_step = self._is_logging_step()
        did_fire = torch.zeros(sae.cfg.d_sae, dtype=torch.bool, device=sae_in.device)
        loss_sum: torch.Tensor | None = None
        losses_sum: dict[str, torch.Tensor] = {}
        out: TrainStepOutput | None = None
        for chunk in sae_in.chunk(m):
            weight = chunk.shape[0] / total
            with self.autocast_if_enabled:
                out = sae.training_forward_pass(
                    step_input=TrainStepInput(
                        sae_in=chunk,
                        dead_neuron_mask=dead,
                        coefficients=coefficients,
                        n_training_steps=self.n_training_steps,
                        is_logging_step=logging_step,
                    )
                )
                with torch.no_grad():
                    firing = out.feature_acts.bool().float()
                    did_fire |= firing.sum(-2).bool()
                    self.act_freq_scores += firing.sum(0)
                    del firing
            (out.loss * weight).backward()
            with torch.no_grad():
                lw = out.loss.detach() * weight
                loss_sum = lw if loss_sum is None else loss_sum + lw
                for k, v in out.losses.items():
                    vw = v.detach() * weight
                    losses_sum[k] = vw if k not in losses_sum else losses_sum[k] + vw
            out = TrainStepOutput(
                sae_in=out.sae_in.detach(),
                sae_out=out.sae_out.detach(),
                feature_acts=out.feature_acts.detach(),
                hidden_pre=out.hidden_pre.detach(),
                loss=lw,
                losses={},
            )
        self.n_forward_passes_since_fired += 1
        self.n_forward_passes_since_fired[did_fire] = 0
        self.n_frac_active_samples += self.cfg.train_batch_size_samples
        torch.nn.utils.clip_grad_norm_(sae.parameters(), 1.0)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.lr_scheduler.step()
        for scheduler in self.coefficient_schedulers.values():
            scheduler.step()
        assert out is not None and loss_sum is not None
        # The last micro-batch's tensors stand for the step (SAELens logs and keeps them).
        return TrainStepOutput(
            sae_in=out.sae_in,
            sae_out=out.sae_out,
            feature_acts=out.feature_acts,
            hidden_pre=out.hidden_pre,
            loss=loss_sum,
            losses=losses_sum,
        )


@contextlib.contextmanager
def split_steps(micro_batches: dict[str, int]) -> Iterator[None]:
    """While active, MultiSAE runners step the SAEs named (by ``cfg.metadata.sae_id``) split."""
    if all(m <= 1 for m in micro_batches.values()):
        yield
        return
    saved = multi_sae_trainer.SAETrainer
    cls = type(
        "SplitStepTrainer", (SplitStepTrainer,), {"micro_batches_by_id": dict(micro_batches)}
    )
    multi_sae_trainer.SAETrainer = cls  # type: ignore[misc]
    try:
        yield
    finally:
        multi_sae_trainer.SAETrainer = saved  # type: ignore[misc]
