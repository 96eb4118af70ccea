"""Read an SAE's decoder directions from a SAELens-format folder, without building the SAE.

Only ``sae_weights.safetensors`` (``W_dec``, shape ``[d_sae, d_in]``), ``cfg.json`` (``d_in``,
the hook name) and, when present, ``sparsity.safetensors`` (log10 firing frequency) are read,
so any architecture (including ones registered by plugins) can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError

# SAELens' own file names (sae_lens.constants); repeated here so that --help stays instant.
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
SAE_CFG_FILENAME = "cfg.json"
SPARSITY_FILENAME = "sparsity.safetensors"

# SAELens stores log10(frequency + 1e-10): a feature that never fired reads -10.
DEAD_LOG10_FREQUENCY = -9.0


@dataclass
class Decoder:
    """Decoder directions of one SAE and which of its features are alive."""

    path: Path
    W_dec: torch.Tensor  # [d_sae, d_in], float32
    hook_name: str
    alive: torch.Tensor  # [d_sae] bool: fired at least once (when known) and has a direction

    @property
    def d_sae(self) -> int:
        return int(self.W_dec.shape[0])

    @property
    def d_in(self) -> int:
        return int(self.W_dec.shape[1])

    def unit(self) -> torch.Tensor:
        """Rows scaled to unit length (zero rows stay zero)."""
        norms = self.W_dec.norm(dim=1, keepdim=True)
        return self.W_dec / norms.clamp_min(1e-12)


def _hook_name(cfg: dict, path: Path) -> str:
    hook = cfg.get("hook_name") or (cfg.get("metadata") or {}).get("hook_name")
    if not isinstance(hook, str) or not hook:
        raise UserError(f"{path}: no hook_name (top level or metadata.hook_name); expected a hook name")
    return hook


def load_decoder(folder: str | Path, dead_log10_frequency: float = DEAD_LOG10_FREQUENCY) -> Decoder:
    """Load ``W_dec``, the hook name and the alive mask of the SAE saved in ``folder``."""
    folder = Path(folder)
    weights, cfg_path = folder / SAE_WEIGHTS_FILENAME, folder / SAE_CFG_FILENAME
    for f in (weights, cfg_path):
        if not f.is_file():
            raise UserError(f"{f}: missing; expected an SAE folder in SAELens format")
    cfg = read_json(cfg_path)
    hook = _hook_name(cfg, cfg_path)
    with safe_open(str(weights), framework="pt") as fh:
        names = list(fh.keys())
        if "W_dec" not in names:
            raise UserError(f"{weights}: no tensor 'W_dec'; found {sorted(names)}")
        W_dec = fh.get_tensor("W_dec").float()
    if W_dec.ndim != 2:
        raise UserError(f"{weights}: W_dec has shape {tuple(W_dec.shape)}; expected [d_sae, d_in]")
    d_in = cfg.get("d_in")
    if d_in is not None and int(d_in) != W_dec.shape[1]:
        raise UserError(f"{cfg_path}: d_in={d_in} but W_dec has {W_dec.shape[1]} columns")
    # one cheap reduction first; the per-row count only when something is off
    n_bad = 0 if torch.isfinite(W_dec.sum()) else int((~torch.isfinite(W_dec)).any(dim=1).sum())
    if n_bad:
        raise UserError(f"{weights}: W_dec has NaN/inf values in {n_bad} of {W_dec.shape[0]} features")
    alive = W_dec.norm(dim=1) > 0
    sparsity = folder / SPARSITY_FILENAME
    if sparsity.is_file():
        with safe_open(str(sparsity), framework="pt") as fh:
            names = list(fh.keys())
            key = "sparsity" if "sparsity" in names else (names[0] if names else None)
            log_freq = fh.get_tensor(key).float().flatten() if key else None
        if log_freq is not None and log_freq.numel() == W_dec.shape[0]:
            alive &= torch.nan_to_num(log_freq, nan=-100.0) > dead_log10_frequency
    return Decoder(path=folder, W_dec=W_dec, hook_name=hook, alive=alive)


def check_comparable(a: Decoder, b: Decoder) -> None:
    """Raise a UserError unless ``a`` and ``b`` read the same hook with the same width."""
    if a.d_in != b.d_in:
        raise UserError(f"{b.path}: d_in={b.d_in} but {a.path} has d_in={a.d_in}; expected equal widths")
    if a.hook_name != b.hook_name:
        raise UserError(
            f"{b.path}: hook {b.hook_name!r} but {a.path} reads {a.hook_name!r}; expected the same hook"
        )
