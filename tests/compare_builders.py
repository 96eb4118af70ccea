"""Tiny builders for the compare tests: SAE folders written with safetensors, planted pairs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

HOOK = "blocks.0.hook_resid_post"


def unit(x: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.normalize(x, dim=-1)


def feature_rows(step: int, sae_id: str, n: int, ja: int | None = None) -> list[dict]:
    """``n`` features.parquet rows of one SAE: all token-level, ``language_paper`` ja for the
    first ``ja`` features (all when None) and en after, ``language_script`` ja."""
    return [{"checkpoint": step, "sae_id": sae_id, "feature": f, "frequency": 0.1, "max_activation": 1.0,
             "mean_activation": 0.5, "language_paper": "ja" if ja is None or f < ja else "en",
             "language_script": "ja", "granularity": "token", "granularity_confidence": 0.9} for f in range(n)]


def write_features_table(root: Path, rows: list[dict]) -> None:
    """``root/analysis/features.parquet`` from ``rows``."""
    import pandas as pd

    (root / "analysis").mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_parquet(root / "analysis" / "features.parquet")


def write_sae(folder: Path, W_dec: torch.Tensor, hook: str = HOOK, log_sparsity: torch.Tensor | None = None,
              hook_in_metadata: bool = True, counts: np.ndarray | None = None,
              write_counts: bool = True) -> Path:
    """A SAELens-format folder holding ``W_dec`` (and a matching encoder, biases, cfg.json).

    ``firing_counts.safetensors`` (saes.dead) says which latents fired: ``counts`` if given, else
    none where ``log_sparsity`` is below -9 (SAELens' never-fired value), else all of them.
    """
    folder.mkdir(parents=True, exist_ok=True)
    d_sae, d_in = W_dec.shape
    W_dec = W_dec.float().contiguous()
    save_file({"W_dec": W_dec, "W_enc": W_dec.T.contiguous(), "b_enc": torch.zeros(d_sae),
               "b_dec": torch.zeros(d_in)}, str(folder / "sae_weights.safetensors"))
    cfg: dict = {"architecture": "topk", "d_in": d_in, "d_sae": d_sae, "k": 4}
    if hook_in_metadata:
        cfg["metadata"] = {"hook_name": hook}
    else:
        cfg["hook_name"] = hook
    (folder / "cfg.json").write_text(json.dumps(cfg), encoding="utf-8")
    if log_sparsity is not None:
        save_file({"sparsity": log_sparsity.float()}, str(folder / "sparsity.safetensors"))
    if write_counts:
        from llmjp_ckpt.saes.dead import write_firing_counts

        if counts is None:
            counts = np.full(d_sae, 100, dtype=np.int64)
            if log_sparsity is not None:
                counts[(log_sparsity < -9).numpy()] = 0
        write_firing_counts(folder, counts, n_tokens=1000)
    return folder


def planted(n: int, d: int, frac: float = 0.6, cos: float = 0.9, seed: int = 0):
    """A (n × d unit rows) and B: a permutation of ``frac`` of A at cosine ``cos``, the rest fresh.

    Returns ``(A, B, truth)`` with ``truth[i]`` = the B row planted from A row ``i``, or -1.
    """
    g = torch.Generator().manual_seed(seed)
    A = unit(torch.randn(n, d, generator=g))
    m = round(frac * n)
    src = torch.randperm(n, generator=g)[:m]
    noise = torch.randn(m, d, generator=g)
    noise = unit(noise - (noise * A[src]).sum(1, keepdim=True) * A[src])  # orthogonal to the source
    B = torch.cat([cos * A[src] + (1 - cos**2) ** 0.5 * noise, unit(torch.randn(n - m, d, generator=g))])
    perm = torch.randperm(n, generator=g)
    B = B[perm]
    where = torch.argsort(perm).numpy()  # row r of the unpermuted B sits at where[r]
    truth = np.full(n, -1, dtype=np.int64)
    truth[src.numpy()] = where[:m]
    return A, B, truth
