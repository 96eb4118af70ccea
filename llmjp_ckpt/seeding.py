"""One seed for every source of randomness: Python ``random``, NumPy and torch (CPU and CUDA).

Stages call :func:`seed_everything` with a seed derived by :func:`derive_seed` from the
config's ``seed`` and what the randomness is for (e.g. ``("init", step, sae_id)``), so that a
piece of work retrained alone draws the same numbers as it does inside a full run.
"""

from __future__ import annotations

import hashlib
import random

SEED_BITS = 63  # torch.manual_seed takes a 64-bit int (NumPy's legacy seed: 32 bits)


def derive_seed(seed: int, *parts: object) -> int:
    """A seed for one purpose: a hash of ``seed`` and ``parts`` (stable across runs and machines)."""
    text = repr((int(seed), *(str(p) for p in parts))).encode("utf-8")
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> (64 - SEED_BITS)


def seed_everything(seed: int) -> int:
    """Seed Python ``random``, NumPy's global generator and torch (CPU and every CUDA device)."""
    import numpy as np
    import torch

    seed = int(seed)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)
    return seed
