"""The one definition of a dead latent, and the SAE identity that derived artefacts record.

A latent is **dead** when it never fires (activation > 0) on any token of the SAE's *dead-latent
evaluation set*: the first ``MetricsSpec.dead_eval_tokens`` trained positions of the val split
(all of it when the split is smaller). The counts are computed once per SAE, by the metrics
pass, and written beside the weights as ``firing_counts.safetensors``
(``counts`` int64 [d_sae], ``n_tokens`` int64 [1]). ``metrics.json``, compare's alive mask, the
norm study and the site all read them through :func:`alive_mask`; nothing else decides.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np

from llmjp_ckpt.errors import UserError

FIRING_FILE = "firing_counts.safetensors"
WEIGHTS_FILE = "sae_weights.safetensors"


def write_firing_counts(folder: str | Path, counts: np.ndarray, n_tokens: int) -> Path:
    """Write ``counts`` (tokens each latent fired on, of ``n_tokens``) into the SAE folder."""
    import torch
    from safetensors.torch import save

    from llmjp_ckpt import atomic

    blob = save({"counts": torch.as_tensor(np.asarray(counts, dtype=np.int64)),
                 "n_tokens": torch.tensor([int(n_tokens)], dtype=torch.int64)})
    path = Path(folder) / FIRING_FILE
    atomic.write_bytes(path, blob)
    return path


def firing_counts(folder: str | Path) -> tuple[np.ndarray, int]:
    """``(counts [d_sae], n_tokens)`` from the SAE folder's ``firing_counts.safetensors``."""
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    path = Path(folder) / FIRING_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found (firing counts are written by the train stage's "
                        "metrics pass; rerun `llmjp-ckpt train`)")
    try:
        data = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UserError(f"{path}: not a readable safetensors file ({exc})") from None
    if "counts" not in data or "n_tokens" not in data:
        raise UserError(f"{path}: expected tensors 'counts' and 'n_tokens'")
    return data["counts"].astype(np.int64), int(data["n_tokens"].reshape(-1)[0])


def alive_mask(folder: str | Path) -> np.ndarray:
    """True for every latent that fired at least once on the dead-latent evaluation set."""
    counts, _ = firing_counts(folder)
    return counts > 0


def dead_count(folder: str | Path) -> int:
    """How many latents are dead (see the module docstring)."""
    return int((~alive_mask(folder)).sum())


def weights_hash(folder: str | Path) -> str:
    """A content hash of the SAE's ``sae_weights.safetensors`` (16 hex digits).

    Every derived artefact (top-N store, labels, feature rows, matches, pages) records it, so a
    retrained SAE under the same id invalidates what was computed from the old weights.
    """
    path = Path(folder) / WEIGHTS_FILE
    if not path.is_file():
        raise UserError(f"{path}: not found (expected SAELens' weights file)")
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.hexdigest()[:16]
