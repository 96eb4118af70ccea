"""The top-N store on disk: ``RUN/features/iter_{step:07d}/<sae_id>/``.

``topn.safetensors`` holds the tensors (ints and floats only), ``features.json`` the small
metadata (with ``sae_weights_hash``, :func:`llmjp_ckpt.saes.dead.weights_hash` of the SAE it
was computed from, part of the store's key ``config_hash``); the folder is written whole
with :func:`llmjp_ckpt.atomic.atomic_dir`, so a folder
with ``features.json`` is complete. Examples come back in the study's format: a window is a
list of ``[token_text, activation]`` with ``token_text`` from
:meth:`llmjp_ckpt.tokens.TokenText.example_texts` (the study's ``piece_text`` for SentencePiece,
real characters for byte-level BPE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.topn import FeatureTopN
from llmjp_ckpt.tokens import TokenText

TENSORS = "topn.safetensors"
META = "features.json"
SCHEMA = 1
_KEYS = {
    "top_values": 2, "top_windows": 2, "top_token_acts": 3,
    "fire_count": 1, "act_sum": 1, "max_activation": 1, "window_ids": 1, "window_tokens": 2,
}
Window = list[list[Any]]  # [[token_text, activation], ...]


def save_store(out_dir: str | Path, res: FeatureTopN, tokens: Tensor, meta: dict[str, Any]) -> Path:
    """Write one SAE's result; ``tokens [n_windows, L]`` are the windows it was computed on."""
    wins = res.top_windows.reshape(-1)
    window_ids = torch.unique(wins[wins >= 0])
    tensors = {
        "top_values": res.top_values.float(), "top_windows": res.top_windows.long(),
        "top_token_acts": res.top_token_acts.half(),
        "fire_count": res.fire_count.long(), "act_sum": res.act_sum.double(),
        "max_activation": res.max_activation.float(),
        "window_ids": window_ids.long(), "window_tokens": tokens[window_ids].to(torch.int32),
    }
    info = {
        "schema": SCHEMA, "n_tokens": res.n_tokens, "n_windows": res.n_windows,
        "d_sae": int(res.top_values.shape[0]), "n_top": int(res.top_values.shape[1]),
        "first_position": int(tokens.shape[1] - res.top_token_acts.shape[2]), **meta,
    }
    out_dir = Path(out_dir)
    with atomic.atomic_dir(out_dir) as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp / TENSORS))
        atomic.write_json(tmp / META, info)  # last: its presence marks a complete folder
    return out_dir


def is_complete(folder: str | Path) -> bool:
    return (Path(folder) / META).is_file() and (Path(folder) / TENSORS).is_file()


@dataclass
class FeatureStore:
    """One SAE's stored top-N examples and statistics."""

    path: Path
    meta: dict[str, Any]
    t: dict[str, Tensor]

    @classmethod
    def load(cls, folder: str | Path) -> FeatureStore:
        """Load and validate; any missing or malformed part is a :class:`UserError`."""
        folder = Path(folder)
        meta_path, tens_path = folder / META, folder / TENSORS
        for p in (meta_path, tens_path):
            if not p.is_file():
                raise UserError(f"{p}: missing (expected a top-N store written by `llmjp-ckpt features`)")
        meta = read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("schema") != SCHEMA:
            raise UserError(
                f"{meta_path}: field 'schema' is "
                f"{meta.get('schema') if isinstance(meta, dict) else meta!r}, expected {SCHEMA}"
            )
        try:
            t = load_file(str(tens_path))
        except Exception as exc:  # safetensors raises its own SafetensorError (not exported)
            raise UserError(f"{tens_path}: unreadable safetensors file ({exc})") from exc
        for key, ndim in _KEYS.items():
            if key not in t:
                raise UserError(f"{tens_path}: tensor '{key}' missing")
            if t[key].ndim != ndim:
                raise UserError(f"{tens_path}: tensor '{key}' has {t[key].ndim} dims, expected {ndim}")
        f, n = t["top_values"].shape
        if t["top_windows"].shape != (f, n) or t["top_token_acts"].shape[:2] != (f, n):
            raise UserError(f"{tens_path}: top_* tensors disagree in shape (expected [{f}, {n}, ...])")
        if len(t["window_ids"]) != len(t["window_tokens"]):
            raise UserError(f"{tens_path}: window_ids and window_tokens differ in length")
        used = t["top_windows"].reshape(-1)
        used = used[used >= 0]
        pos = torch.searchsorted(t["window_ids"], used).clamp(max=max(len(t["window_ids"]) - 1, 0))
        if len(used) and (len(t["window_ids"]) == 0 or not torch.equal(t["window_ids"][pos], used)):
            raise UserError(f"{tens_path}: example windows refer to ids absent from window_ids")
        return cls(folder, meta, t)

    @property
    def d_sae(self) -> int:
        return int(self.t["top_values"].shape[0])

    @property
    def frequency(self) -> Tensor:
        return self.t["fire_count"].double() / max(int(self.meta["n_tokens"]), 1)

    @property
    def mean_activation(self) -> Tensor:
        c = self.t["fire_count"]
        return torch.where(c > 0, self.t["act_sum"] / c.clamp(min=1), 0.0)

    def examples(self, feature: int, tt: TokenText | None = None,
                 round_to: int | None = 4) -> list[Window]:
        """A latent's top examples, descending, in the study's format (empty for a dead latent).

        Without a tokenizer, token text is ``<id N>``.
        """
        if not 0 <= feature < self.d_sae:
            raise UserError(f"feature {feature}: expected 0 <= feature < {self.d_sae}")
        wins = self.t["top_windows"][feature]
        keep = (wins >= 0).nonzero().squeeze(1)
        if len(keep) == 0:
            return []
        rows = torch.searchsorted(self.t["window_ids"], wins[keep])
        first = int(self.meta["first_position"])
        ids_all = self.t["window_tokens"][rows].tolist()
        acts_all = self.t["top_token_acts"][feature][keep].float().tolist()
        out: list[Window] = []
        for ids, vals in zip(ids_all, acts_all):
            # the whole window goes through TokenText: byte-level BPE rebuilds characters
            # across tokens (a kanji's bytes may start before ``first``)
            texts = tt.example_texts(ids)[first:] if tt else [f"<id {i}>" for i in ids[first:]]
            out.append([[t, round(v, round_to) if round_to is not None else v]
                        for t, v in zip(texts, vals)])
        return out
