"""Exact resume: a SAELens checkpoint that also holds the mixing buffer and the random state.

SAELens 6.54 saves, per checkpoint, each SAE's weights and trainer state and the activation
store's ``n_dataset_processed``; on resume it fast-forwards the dataset to that row. Three
things are lost, so a resumed run is not bit-identical to an uninterrupted one: the mixing
buffer's content (activations read but not served yet: SAELens' ``mixing_buffer`` keeps them
in a generator's local variables), the torch / NumPy / Python random state (the buffer's
``torch.randperm`` shuffles), and one training step of ``n_training_steps`` (the checkpoint is
written before the step counter is advanced, which shifts the sparsity windows by one).

:class:`ExactStream` is the seam: the same stream as SAELens'
``ActivationsStore.get_multi_hook_data_loader`` (``multi_hook_concat_split_iter`` over
``mixing_buffer``, the same operations in the same order, so the same batches) as an object
whose state can be saved. :func:`install` puts it on a runner's store and extends the store's
``save_to_checkpoint`` / ``load_from_checkpoint`` (which SAELens calls for every checkpoint
and on resume) to write and restore ``llmjp_stream_state.pt`` beside SAELens' files. Only a
periodic checkpoint (``MultiSAETrainer._checkpoint_if_needed``, taken between two steps) gets
that file; SAELens' interrupt checkpoint can be taken mid-step and gets none, so resuming from
it is SAELens' approximate resume (logged).
"""

from __future__ import annotations

import logging
import random
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger(__name__)
STATE_FILE = "llmjp_stream_state.pt"
TRAINER_STATE_FILE = "trainer_state.pt"  # sae_lens.constants.TRAINER_STATE_FILENAME


class ExactStream(Iterator[dict[str, torch.Tensor]]):
    """SAELens' multi-hook mixing stream with a saveable state (same batches, same RNG use)."""

    def __init__(self, store: Any):
        self.store = store
        self.hooks = list(store._hook_names)
        self.buffer_size = store.n_batches_in_buffer * store.training_context_size
        self.batch_size = store.train_batch_size_tokens
        self.mix = store.activations_mixing_fraction
        if self.buffer_size < self.batch_size:
            raise ValueError("Buffer size must be greater than or equal to batch size")
        self._source: Iterator[dict[str, torch.Tensor]] | None = None
        self.storage: torch.Tensor | None = None  # packed [n, sum d_in]
        self.serving: torch.Tensor | None = None  # the current serving round's batches
        self.next_batch = 0
        self.n_batches = 0
        self.bounds: list[int] | None = None
        self.served = 0

    def _lm_batch(self) -> torch.Tensor | None:
        if self._source is None:
            self._source = self.store._iterate_filtered_multi_hook_activations()
        try:
            d = next(self._source)
        except StopIteration:
            return None
        if self.bounds is None:
            missing = [h for h in self.hooks if h not in d]
            if missing:
                raise ValueError(f"producer did not yield activations for hooks {missing}")
            self.bounds = [0]
            for h in self.hooks:
                self.bounds.append(self.bounds[-1] + d[h].shape[1])
        return torch.cat([d[h] for h in self.hooks], dim=1)

    def _refill(self) -> None:
        """One round of ``mixing_buffer``: read until full, shuffle, keep a part, serve the rest."""
        while True:
            new = self._lm_batch()
            if new is None:
                raise StopIteration
            self.storage = new if self.storage is None else torch.cat([self.storage, new], dim=0)
            if self.storage.shape[0] >= self.buffer_size:
                break
        if self.mix > 0:
            self.storage = self.storage[torch.randperm(self.storage.shape[0])]
        keep = int(self.buffer_size * self.mix)
        n_serve = max(1, (self.storage.shape[0] - keep) // self.batch_size)
        cut = n_serve * self.batch_size
        self.serving, self.storage = self.storage[:cut], self.storage[cut:]
        self.n_batches, self.next_batch = n_serve, 0

    def __next__(self) -> dict[str, torch.Tensor]:
        if self.serving is None or self.next_batch >= self.n_batches:
            self._refill()
        assert self.serving is not None and self.bounds is not None
        i = self.next_batch
        batch = self.serving[i * self.batch_size:(i + 1) * self.batch_size]
        self.next_batch += 1
        self.served += 1
        return {h: batch[:, self.bounds[j]:self.bounds[j + 1]] for j, h in enumerate(self.hooks)}

    def state_dict(self) -> dict[str, Any]:
        rest = None
        if self.serving is not None and self.next_batch < self.n_batches:
            rest = self.serving[self.next_batch * self.batch_size:].cpu().clone()
        state: dict[str, Any] = {
            "storage": None if self.storage is None else self.storage.cpu().clone(),
            "serving": rest, "bounds": self.bounds, "served": self.served,
            "n_dataset_processed": int(self.store.n_dataset_processed),
            "torch": torch.get_rng_state(), "python": random.getstate(),
        }
        kind, keys, pos, has_gauss, gauss = np.random.get_state()
        state["numpy"] = (kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, gauss)
        if torch.cuda.is_available():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any], device: Any) -> None:
        self.storage = None if state["storage"] is None else state["storage"].to(device)
        rest = state["serving"]
        self.serving = None if rest is None else rest.to(device)
        self.n_batches = 0 if rest is None else rest.shape[0] // self.batch_size
        self.next_batch = 0
        self.bounds, self.served = state["bounds"], state["served"]
        torch.set_rng_state(state["torch"])
        kind, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
        random.setstate(state["python"])
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


def _periodic() -> bool:
    """True when called from inside ``MultiSAETrainer._checkpoint_if_needed`` (between steps).

    SAELens passes no reason to its checkpoint hook; the caller's frame is the one place that
    tells a periodic checkpoint from its interrupt checkpoint (taken wherever a signal lands).
    """
    f = sys._getframe(1)
    while f is not None:
        if f.f_code.co_name == "_checkpoint_if_needed":
            return True
        f = f.f_back
    return False


def _fix_step_counters(ckpt: Path, names: list[str]) -> None:
    """Write each SAE's completed steps into its trainer_state.pt (SAELens saves one less)."""
    for name in names:
        path = ckpt / name / TRAINER_STATE_FILE
        state = torch.load(path, map_location="cpu", weights_only=True)
        state["n_training_steps"] = int(state["n_training_steps"]) + 1
        torch.save(state, path)


def install(runner: Any) -> ExactStream | None:
    """Give ``runner`` (a ``MultiSAETrainingRunner``) an :class:`ExactStream` and exact
    checkpoints; returns the stream, or None with ``prefetch_llm_batches`` (its thread reads
    ahead of the trainer, so no checkpoint could hold a consistent stream state)."""
    if runner.cfg.prefetch_llm_batches:
        log.warning("runner.prefetch_llm_batches: a resumed run is SAELens' approximate resume")
        return None
    store = runner.activations_store
    stream = ExactStream(store)
    names = list(runner.cfg.saes)
    save, load = store.save_to_checkpoint, store.load_from_checkpoint

    def save_to_checkpoint(path: str | Path) -> None:
        save(path)
        target = Path(path) / STATE_FILE
        if _periodic():
            from llmjp_ckpt import atomic

            _fix_step_counters(Path(path), names)
            atomic.write_bytes(target, _to_bytes(stream.state_dict()))
        else:
            target.unlink(missing_ok=True)

    def load_from_checkpoint(path: str | Path) -> None:
        target = Path(path) / STATE_FILE
        if not target.is_file():
            log.warning("%s: no %s (an interrupt checkpoint): resuming as SAELens does, "
                        "not bit-identical", path, STATE_FILE)
            load(path)
            return
        state = torch.load(target, map_location="cpu", weights_only=True)  # tensors, no code
        load(path)  # SAELens fast-forwards the dataset to the checkpoint's row
        if int(store.n_dataset_processed) != state["n_dataset_processed"]:
            log.warning("%s: dataset position %d, expected %d: not bit-identical", path,
                        store.n_dataset_processed, state["n_dataset_processed"])
        stream.load_state_dict(state, store.device)

    store.get_multi_hook_data_loader = lambda: stream  # type: ignore[method-assign]
    store.save_to_checkpoint = save_to_checkpoint  # type: ignore[method-assign]
    store.load_from_checkpoint = load_from_checkpoint  # type: ignore[method-assign]
    return stream


def _to_bytes(state: dict[str, Any]) -> bytes:
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    return buf.getvalue()
