"""P9: a crosscoder over N checkpoints vs N independent SAEs on the same stream, per token.

Both are trained through SAELens' ``SAETrainer`` on the same planted stream
(:class:`llmjp_ckpt.crosscoders.stream.Planted`, generated before timing): the crosscoder on
the ``[T, N*d]`` concatenation with ``expansion x d`` latents, and N independent TopK SAEs, each
on one ``[T, d]`` block with ``expansion x d`` latents. Measured in one run, side by side:
training milliseconds per 1,000 tokens and their ratio.

    .venv/bin/python benchmarks/bench_crosscoder.py [--blocks 3] [--d 64] [--tokens 65536]
"""

from __future__ import annotations

import argparse
import time

import torch


def pre_generated(planted, batch: int, n_batches: int) -> list[torch.Tensor]:
    it = planted.stream(batch, seed=1)
    return [next(it) for _ in range(n_batches)]


def train_seconds(batches: list[torch.Tensor], d_in: int, d_sae: int, k: int, blocks: int,
                  crosscoder: bool) -> float:
    from sae_lens.config import LoggingConfig, SAETrainerConfig
    from sae_lens.saes.topk_sae import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.training.sae_trainer import SAETrainer

    from llmjp_ckpt.crosscoders.architecture import (
        CrosscoderTrainingSAE,
        CrosscoderTrainingSAEConfig,
    )

    torch.manual_seed(0)
    if crosscoder:
        sae = CrosscoderTrainingSAE(CrosscoderTrainingSAEConfig(
            d_in=d_in, d_sae=d_sae, k=k, n_blocks=blocks, dtype="float32", device="cpu"))
    else:
        sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=d_in, d_sae=d_sae, k=k, dtype="float32",
                                                    device="cpu"))
    n = sum(b.shape[0] for b in batches)
    cfg = SAETrainerConfig(total_training_samples=n, train_batch_size_samples=batches[0].shape[0],
                           lr=1e-3, lr_end=1e-3, device="cpu", dead_feature_window=10,
                           feature_sampling_window=10_000, logger=LoggingConfig(log_to_wandb=False))
    t = time.perf_counter()
    SAETrainer(cfg=cfg, sae=sae, data_provider=iter(batches)).fit()
    return time.perf_counter() - t


def main() -> None:
    from llmjp_ckpt.crosscoders.stream import Planted

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--blocks", type=int, default=3)
    ap.add_argument("--d", type=int, default=64)
    ap.add_argument("--expansion", type=int, default=4)
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--tokens", type=int, default=65536)
    ap.add_argument("--batch", type=int, default=1024)
    args = ap.parse_args()
    n_b, d = args.blocks, args.d
    planted = Planted.make(4 * d, n_b, d, active=8, seed=0, born=lambda j: j % n_b)
    batches = pre_generated(planted, args.batch, args.tokens // args.batch)
    d_sae = args.expansion * d
    cc = train_seconds(batches, n_b * d, d_sae, args.k, n_b, crosscoder=True)
    ind = sum(train_seconds([b[:, i * d:(i + 1) * d].contiguous() for b in batches], d, d_sae,
                            args.k, 1, crosscoder=False) for i in range(n_b))
    per_k = 1000 / args.tokens
    print(f"blocks {n_b}, d {d}, latents {d_sae}, k {args.k}, {args.tokens} tokens, "
          f"torch threads {torch.get_num_threads()}")
    print(f"crosscoder          : {cc * per_k * 1000:.1f} ms per 1k tokens")
    print(f"{n_b} independent SAEs : {ind * per_k * 1000:.1f} ms per 1k tokens")
    print(f"ratio crosscoder / independent: {cc / ind:.2f}")


if __name__ == "__main__":
    main()
