"""Streams of concatenated activations: several checkpoints at the same tokens, or planted ones.

Each checkpoint's block is scaled to unit L2 norm per token (the study's Scalar normalisation),
so no checkpoint dominates the shared encoder by its scale. Tokens are shuffled within a buffer
of windows by a seeded generator.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch


def unit_blocks(acts: list[torch.Tensor]) -> torch.Tensor:
    """``[T, d]`` per checkpoint -> ``[T, N*d]``, each block at unit norm per token."""
    return torch.cat([a / a.norm(dim=-1, keepdim=True).clamp_min(1e-6) for a in acts], dim=-1)


def checkpoint_stream(models: Sequence[object], hook: str, tokens: torch.Tensor,
                      batch_tokens: int, batch_windows: int, seed: int,
                      drop_bos: bool = True) -> Iterator[torch.Tensor]:
    """Concatenated activations of ``models`` at ``hook`` on ``tokens`` ([n, L]), forever.

    Every model runs on the same windows (in turn, one batch at a time); positions after BOS are
    trained, as in the SAE stage. Epochs repeat with a fresh seeded order.
    """
    gen = torch.Generator().manual_seed(seed)
    layer = int(hook.split(".")[1])
    buf = torch.empty(0)
    while True:
        order = torch.randperm(tokens.shape[0], generator=gen)
        for i in range(0, len(order), batch_windows):
            batch = tokens[order[i:i + batch_windows]]
            acts = []
            with torch.no_grad():
                for model in models:
                    dev = next(model.parameters()).device  # type: ignore[attr-defined]
                    _, cache = model.run_with_cache(  # type: ignore[attr-defined]
                        batch.to(dev), names_filter=hook, stop_at_layer=layer + 1)
                    a = cache[hook][:, 1:] if drop_bos else cache[hook]
                    acts.append(a.reshape(-1, a.shape[-1]).float().cpu())
            chunk = unit_blocks(acts)
            buf = torch.cat([buf, chunk[torch.randperm(chunk.shape[0], generator=gen)]])
            while buf.shape[0] >= batch_tokens:
                yield buf[:batch_tokens]
                buf = buf[batch_tokens:]


@dataclass
class Planted:
    """A synthetic checkpoint series with known features (for tests and benchmarks).

    Feature ``j`` has one random direction per checkpoint and exists from checkpoint
    ``born[j]`` on (its direction is zero before); each token activates ``active`` features.
    """

    directions: torch.Tensor  # [n_features, n_blocks, d]
    born: torch.Tensor  # [n_features] index of the first checkpoint where the feature exists
    active: int

    @classmethod
    def make(cls, n_features: int, n_blocks: int, d: int, active: int, seed: int,
             born: Callable[[int], int] | None = None) -> Planted:
        g = torch.Generator().manual_seed(seed)
        dirs = torch.randn(n_features, n_blocks, d, generator=g)
        dirs = dirs / dirs.norm(dim=-1, keepdim=True)
        births = torch.tensor([born(j) if born else 0 for j in range(n_features)])
        for j, b in enumerate(births.tolist()):
            dirs[j, :b] = 0.0
        return cls(dirs, births, active)

    def stream(self, batch_tokens: int, seed: int) -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        n = self.directions.shape[0]
        while True:
            idx = torch.rand(batch_tokens, n, generator=g).argsort(-1)[:, : self.active]
            coef = torch.zeros(batch_tokens, n)
            coef.scatter_(1, idx, torch.rand(batch_tokens, self.active, generator=g) + 0.5)
            x = torch.einsum("tn,nbd->tbd", coef, self.directions)
            # planted blocks share one scale by construction: no per-block normalisation (a
            # token whose features are all unborn at a checkpoint is then ~0 there, not noise)
            yield (x + 0.01 * torch.randn(x.shape, generator=g)).reshape(batch_tokens, -1)
