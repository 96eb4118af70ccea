"""The study authors' published SAEs -> SAELens-format SAEs with our Scalar normalisation.

The authors (llm-jp-sae) publish one SAE per checkpoint as
``llm-jp/llm-jp-3-1.8b-sae-l12-k32-16x-c{step}`` in their own format, loaded upstream with remote
code. We read the files instead and never run code from a repo:

- ``config.json``: ``d_in``, ``num_latents``, ``k`` (``model_type: topk_sae``);
- ``*.safetensors``: ``encoder.weight`` [n, d], ``encoder.bias`` [n], ``decoder.weight`` [d, n],
  ``b_dec`` [d];
- input scaled to unit L2 norm; ``z = TopK(ReLU(encoder(x - b_dec)))``,
  ``x_hat = decoder(z) + b_dec`` (in the normalised space).

That is exactly our ``scalar`` TopK architecture with ``W_enc = encoder.weight.T``,
``b_enc = encoder.bias``, ``W_dec = decoder.weight.T``, ``b_dec = b_dec`` (SAELens subtracts
``b_dec`` from the input before encoding; its TopK keeps the k largest pre-activations and applies
ReLU to them, which selects the same values as TopK after ReLU).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError

PEER_KEYS = {"encoder.weight", "encoder.bias", "decoder.weight", "b_dec"}
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def fetch(src: str, revision: str | None = None) -> Path:
    """A local folder as it is, or a hub repo id downloaded (config and safetensors only)."""
    path = Path(src)
    if path.exists():
        if not path.is_dir():
            raise UserError(f"{src}: expected a folder holding config.json and *.safetensors")
        return path
    if not _REPO_ID.match(src):
        raise UserError(f"{src}: not a folder, nor a hub repo id (expected owner/name)")
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:  # only data files: nothing executable is fetched, nothing is run
        return Path(snapshot_download(src, revision=revision,
                                      allow_patterns=["config.json", "*.safetensors"]))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UserError(f"{src}: could not fetch the hub repo ({first})") from None


def read_peer(folder: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The authors' config and weights, checked against each other; one line on any mismatch."""
    cfg_path = folder / "config.json"
    if not cfg_path.is_file():
        raise UserError(f"{cfg_path}: not found (expected the authors' config: d_in, num_latents, k)")
    cfg = read_json(cfg_path)
    if not isinstance(cfg, dict):
        raise UserError(f"{cfg_path}: expected a JSON object")
    for key in ("d_in", "num_latents", "k"):
        val = cfg.get(key)
        if not isinstance(val, int) or isinstance(val, bool) or val < 1:
            raise UserError(f"{cfg_path}: field {key!r} is {val!r}: expected a positive integer")
    if cfg["k"] > cfg["num_latents"]:
        raise UserError(f"{cfg_path}: k {cfg['k']} exceeds num_latents {cfg['num_latents']}")
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
        what = f"only pickle weights ({', '.join(pickles)}), which are never loaded" if pickles \
            else "no *.safetensors file"
        raise UserError(f"{folder}: {what}: expected safetensors weights")
    weights = _load_tensors(files)
    missing = sorted(PEER_KEYS - set(weights))
    if missing:
        raise UserError(f"{folder}: weights lack {', '.join(missing)} (expected "
                        "encoder.weight, encoder.bias, decoder.weight, b_dec)")
    n, d = cfg["num_latents"], cfg["d_in"]
    want = {"encoder.weight": (n, d), "encoder.bias": (n,), "decoder.weight": (d, n), "b_dec": (d,)}
    for key, shape in want.items():
        got = tuple(weights[key].shape)
        if got != shape:
            raise UserError(f"{folder}: {key} has shape {list(got)}: config.json (d_in {d}, "
                            f"num_latents {n}) expects {list(shape)}")
    return cfg, {k: weights[k].float() for k in PEER_KEYS}


def _load_tensors(files: list[Path]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for f in files:
        try:
            out.update(load_file(str(f)))
        except (SafetensorError, OSError, ValueError) as exc:
            raise UserError(f"{f}: not a readable safetensors file ({exc})") from None
    return out


def to_saelens(cfg: dict[str, Any], weights: dict[str, torch.Tensor], hook_name: str,
               metadata: dict[str, Any] | None = None) -> Any:
    """Our Scalar TopK SAE (inference class) holding the authors' weights."""
    from llmjp_ckpt.saes.normalisation import TokenNormTopKSAE, TokenNormTopKSAEConfig

    sae_cfg = TokenNormTopKSAEConfig(
        d_in=cfg["d_in"], d_sae=cfg["num_latents"], k=cfg["k"], dtype="float32", device="cpu",
        apply_b_dec_to_input=True, normalisation="scalar",
    )
    sae_cfg.metadata.hook_name = hook_name
    for key, val in (metadata or {}).items():
        setattr(sae_cfg.metadata, key, val)
    sae = TokenNormTopKSAE(sae_cfg)
    sae.load_state_dict({
        "W_enc": weights["encoder.weight"].T.contiguous(),
        "b_enc": weights["encoder.bias"].contiguous(),
        "W_dec": weights["decoder.weight"].T.contiguous(),
        "b_dec": weights["b_dec"].contiguous(),
    })
    return sae


def import_peer(src: str, out: str | Path, hook_name: str = "blocks.11.hook_resid_post",
                revision: str | None = None) -> Path:
    """Import one of the authors' SAEs from ``src`` into the SAELens folder ``out`` (whole or not at all)."""
    folder = fetch(src, revision)
    cfg, weights = read_peer(folder)
    sae = to_saelens(cfg, weights, hook_name, {"peer_source": src, "peer_revision": revision})
    out = Path(out)
    with atomic.atomic_dir(out) as tmp:
        sae.save_model(str(tmp))
        atomic.write_json(tmp / "peer.json", {"source": src, "revision": revision,
                                              "config": cfg, "format": "llm-jp-sae topk_sae"})
    return out

