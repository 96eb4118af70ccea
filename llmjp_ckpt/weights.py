"""Safetensors weight files read with one clear line for a bad one.

A truncated or corrupt file makes ``safetensors`` raise its own ``SafetensorError`` (for example
``Error while deserializing header: MetadataIncompleteBuffer``) from deep inside SAELens or our
readers. Every stage that reads an SAE's weights (match / compare, features, site, upload) goes
through :func:`check_sae_weights` or :func:`load_sae` first, so the user sees the file and what was
expected instead of a traceback.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmjp_ckpt.errors import UserError

SAE_WEIGHTS = "sae_weights.safetensors"  # sae_lens.constants.SAE_WEIGHTS_FILENAME
SAE_CFG = "cfg.json"  # sae_lens.constants.SAE_CFG_FILENAME
SAE_TENSORS = ("W_enc", "W_dec")
SAE_EXPECTED = ("SAELens' sae_weights.safetensors with tensors W_enc [d_in, d_sae], "
                "W_dec [d_sae, d_in]")


def tensor_shapes(
    path: str | Path, expected: str, required: tuple[str, ...] = ()
) -> dict[str, tuple]:
    """``{tensor name: shape}`` from a safetensors file's header.

    A missing, truncated or corrupt file, or one without the ``required`` tensors, is a
    :class:`UserError` naming the file and ``expected`` (what it should have been).
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: not found; expected {expected}")
    try:
        with safe_open(str(path), framework="pt") as fh:
            names = list(fh.keys())
            shapes = {name: tuple(fh.get_slice(name).get_shape()) for name in names}
    except (SafetensorError, OSError, ValueError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{path}: not a readable safetensors file, truncated or corrupt "
                        f"({reason}); expected {expected}") from None
    missing = [n for n in required if n not in shapes]
    if missing:
        raise UserError(f"{path}: no tensor {', '.join(map(repr, missing))} "
                        f"(has {sorted(shapes)}); expected {expected}")
    return shapes


def check_sae_weights(folder: str | Path) -> dict[str, tuple]:
    """Validate an SAE folder's weights against its ``cfg.json``; return the tensor shapes."""
    from llmjp_ckpt.config import read_json

    folder = Path(folder)
    path = folder / SAE_WEIGHTS
    shapes = tensor_shapes(path, SAE_EXPECTED, SAE_TENSORS)
    cfg: Any = read_json(folder / SAE_CFG) if (folder / SAE_CFG).is_file() else {}
    d_in, d_sae = (cfg.get("d_in"), cfg.get("d_sae")) if isinstance(cfg, dict) else (None, None)
    want = {"W_dec": (d_sae, d_in), "W_enc": (d_in, d_sae)}
    for name, dims in want.items():
        got = shapes[name]
        if len(got) != 2 or any(w is not None and int(w) != g for w, g in zip(dims, got)):
            shown = ", ".join("?" if w is None else str(w) for w in dims)
            raise UserError(f"{path}: {name} has shape {list(got)}; expected [{shown}] "
                            f"from {folder / SAE_CFG} (d_in={d_in}, d_sae={d_sae})")
    return shapes


def load_sae(folder: str | Path, device: str = "cpu") -> Any:
    """``SAE.load_from_disk(folder)`` (eval mode) after :func:`check_sae_weights`."""
    from sae_lens import SAE

    check_sae_weights(folder)
    try:
        return SAE.load_from_disk(str(folder), device=device).eval()
    except RuntimeError as exc:  # load_state_dict: a tensor that cfg.json does not describe
        if "state_dict" not in str(exc) and "size mismatch" not in str(exc):
            raise
        raise UserError(f"{Path(folder) / SAE_WEIGHTS}: does not fit {SAE_CFG} "
                        f"({str(exc).splitlines()[0]}); expected {SAE_EXPECTED}") from None
