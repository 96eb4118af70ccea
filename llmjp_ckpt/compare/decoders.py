"""Read an SAE's decoder directions from a SAELens-format folder, without building the SAE.

Only ``sae_weights.safetensors`` (``W_dec``, shape ``[d_sae, d_in]``), ``cfg.json`` (``d_in``,
the hook name) and ``firing_counts.safetensors`` (the one definition of a dead latent,
:mod:`llmjp_ckpt.saes.dead`) are read, so any architecture (including ones registered by
plugins) can be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.weights import tensor_shapes

# SAELens' own file names (sae_lens.constants); repeated here so that --help stays instant.
SAE_WEIGHTS_FILENAME = "sae_weights.safetensors"
SAE_CFG_FILENAME = "cfg.json"


@dataclass
class Decoder:
    """Decoder directions of one SAE and which of its features are alive."""

    path: Path
    W_dec: torch.Tensor  # [d_sae, d_in], float32
    hook_name: str
    alive: torch.Tensor  # [d_sae] bool: not dead (saes.dead.alive_mask) and has a direction
    weights_hash: str = ""  # saes.dead.weights_hash of the folder: what matches record

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


def load_decoder(folder: str | Path, require_counts: bool = True) -> Decoder:
    """Load ``W_dec``, the hook name and the alive mask of the SAE saved in ``folder``.

    The alive mask is :func:`llmjp_ckpt.saes.dead.alive_mask` (a folder without
    ``firing_counts.safetensors`` is a :class:`UserError`); with ``require_counts=False`` (SAEs
    from elsewhere, ``llmjp-ckpt match``) such a folder counts every latent with a direction
    alive.
    """
    from llmjp_ckpt.saes import dead
    folder = Path(folder)
    weights, cfg_path = folder / SAE_WEIGHTS_FILENAME, folder / SAE_CFG_FILENAME
    for f in (weights, cfg_path):
        if not f.is_file():
            raise UserError(f"{f}: missing; expected an SAE folder in SAELens format")
    cfg = read_json(cfg_path)
    hook = _hook_name(cfg, cfg_path)
    # a truncated / corrupt file: one line naming it (safetensors' own error is a traceback)
    tensor_shapes(weights, "SAELens' sae_weights.safetensors with W_dec [d_sae, d_in]", ("W_dec",))
    with safe_open(str(weights), framework="pt") as fh:
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
    if require_counts or (folder / dead.FIRING_FILE).is_file():
        fired = dead.alive_mask(folder)
        if fired.shape != (W_dec.shape[0],):
            raise UserError(f"{folder / dead.FIRING_FILE}: {fired.shape[0]} counts, expected "
                            f"d_sae={W_dec.shape[0]}")
        alive &= torch.from_numpy(fired)
    return Decoder(path=folder, W_dec=W_dec, hook_name=hook, alive=alive,
                   weights_hash=dead.weights_hash(folder))


def check_comparable(a: Decoder, b: Decoder) -> None:
    """Raise a UserError unless ``a`` and ``b`` read the same hook with the same width."""
    if a.d_in != b.d_in:
        raise UserError(f"{b.path}: d_in={b.d_in} but {a.path} has d_in={a.d_in}; expected equal widths")
    if a.hook_name != b.hook_name:
        raise UserError(
            f"{b.path}: hook {b.hook_name!r} but {a.path} reads {a.hook_name!r}; expected the same hook"
        )
