"""The top-N store on disk: ``RUN/features/iter_{step:07d}/<sae_id>/``.

``topn.safetensors`` holds the tensors (ints and floats only; since schema 2 window ids as
int32 and the mostly-zero per-token values as their nonzero entries when that is smaller, rebuilt
dense on load), ``features.json`` the small metadata (with ``sae_weights_hash``,
:func:`llmjp_ckpt.saes.dead.weights_hash` of the SAE it was computed from, part of the store's
key ``config_hash``); the folder is written whole with :func:`llmjp_ckpt.atomic.atomic_dir`, so
a folder with ``features.json`` is complete. Examples come back in the study's format: a window is a
list of ``[token_text, activation]`` with ``token_text`` from
:meth:`llmjp_ckpt.tokens.TokenText.example_texts` (the study's ``piece_text`` for SentencePiece,
real characters for byte-level BPE).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.topn import FeatureTopN
from llmjp_ckpt.tokens import TokenText

if TYPE_CHECKING:
    from llmjp_ckpt.labels.batch import FlatFeatures

TENSORS = "topn.safetensors"
META = "features.json"
SCHEMA = 2  # 2: int32 window ids, per-token values sparse when that is smaller; 1 still loads
SCHEMAS = (1, 2)
_KEYS = {
    "top_values": 2, "top_windows": 2, "top_token_acts": 3,
    "fire_count": 1, "act_sum": 1, "max_activation": 1, "window_ids": 1, "window_tokens": 2,
}
# the per-token values of the kept examples are mostly zeros (a latent fires on a few tokens of
# its top windows: ~96 % zeros in the demo), so they are written as the nonzero entries'
# flat indices into [F, N, T] and their float16 values when that is smaller than the dense
# tensor, and rebuilt dense on load (readers see ``top_token_acts`` either way)
_SPARSE = ("token_acts_index", "token_acts_values", "token_acts_shape")
Window = list[list[Any]]  # [[token_text, activation], ...]


def save_store(out_dir: str | Path, res: FeatureTopN, tokens: Tensor, meta: dict[str, Any]) -> Path:
    """Write one SAE's result; ``tokens [n_windows, L]`` are the windows it was computed on."""
    wins = res.top_windows.reshape(-1)
    window_ids = torch.unique(wins[wins >= 0])
    tensors = {
        "top_values": res.top_values.float(), "top_windows": res.top_windows.to(torch.int32),
        **_token_acts_tensors(res.top_token_acts.half()),
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


def _token_acts_tensors(acts: Tensor) -> dict[str, Tensor]:
    """``top_token_acts`` dense, or as its nonzero entries when that takes fewer bytes."""
    flat = acts.reshape(-1)
    nz = flat.nonzero().squeeze(1)
    index_dtype = torch.int32 if flat.numel() < 2**31 else torch.int64
    if len(nz) * (index_dtype.itemsize + 2) >= flat.numel() * 2:
        return {"top_token_acts": acts}
    return {"token_acts_index": nz.to(index_dtype), "token_acts_values": flat[nz],
            "token_acts_shape": torch.tensor(acts.shape, dtype=torch.int64)}


def _dense_token_acts(t: dict[str, Tensor], path: Path) -> Tensor:
    """``top_token_acts`` rebuilt from its sparse form (validated)."""
    missing = [k for k in _SPARSE if k not in t]
    if missing:
        raise UserError(f"{path}: tensor 'top_token_acts' missing (nor its sparse form: {missing[0]})")
    idx, vals, shape = t["token_acts_index"].long(), t["token_acts_values"], t["token_acts_shape"]
    if shape.ndim != 1 or len(shape) != 3 or (shape < 0).any():
        raise UserError(f"{path}: tensor 'token_acts_shape' must hold 3 sizes, got {shape.tolist()}")
    numel = int(shape.prod())
    if idx.ndim != 1 or idx.shape != vals.shape or (len(idx) and (idx.min() < 0 or idx.max() >= numel)):
        raise UserError(f"{path}: token_acts_index/values: expected equal 1-D lengths, indices < {numel}")
    dense = torch.zeros(numel, dtype=torch.float16)
    dense[idx] = vals.half()
    return dense.reshape(shape.tolist())


class LabelInputs:
    """The labeller's inputs of some latents of a store, built a chunk at a time
    (:meth:`FeatureStore.label_inputs`), so the flat arrays of 32,768 latents never sit in memory
    at once; :func:`llmjp_ckpt.labels.batch.label_features` calls :meth:`slice` per chunk."""

    def __init__(self, store: FeatureStore, tt: TokenText | None, n_examples: int, live: Tensor):
        self.store, self.tt, self.n_examples = store, tt, n_examples
        self.live = np.asarray(live, np.int64)  # numpy only in the workers (see label_inputs)
        store._window_texts(tt)  # once, before any worker forks
        _rounded(np.zeros(1, np.float16), 4)  # the rounding table too

    def __len__(self) -> int:
        return len(self.live)

    def slice(self, lo: int, hi: int) -> FlatFeatures:
        got, flat = self.store.label_inputs(self.tt, self.n_examples, features=self.live[lo:hi])
        assert len(got) == hi - lo  # every one of ``live`` has an example
        return flat


_ROUNDED: dict[int | None, np.ndarray] = {}


def _rounded(values: Tensor | np.ndarray, round_to: int | None) -> np.ndarray:
    """``round(float(v), round_to)`` of each value as float64, as :meth:`FeatureStore.examples`
    gives them; float16 goes through a table of all 65,536 values (exact, no Python per value)."""
    if isinstance(values, Tensor):
        values = values.numpy()
    if values.dtype != np.float16:
        v = values.astype(np.float64).tolist()
        return np.asarray(v if round_to is None else [round(x, round_to) for x in v], np.float64)
    if round_to not in _ROUNDED:  # indexed by the value's 16 bits
        f = np.arange(1 << 16, dtype=np.uint16).view(np.float16).astype(np.float64).tolist()
        _ROUNDED[round_to] = np.asarray(f if round_to is None else [round(x, round_to) for x in f])
    return _ROUNDED[round_to][np.ascontiguousarray(values).view(np.uint16)]


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
        if not isinstance(meta, dict) or meta.get("schema") not in SCHEMAS:
            raise UserError(
                f"{meta_path}: field 'schema' is "
                f"{meta.get('schema') if isinstance(meta, dict) else meta!r}, expected one of {SCHEMAS}"
            )
        try:
            t = load_file(str(tens_path))
        except Exception as exc:  # safetensors raises its own SafetensorError (not exported)
            raise UserError(f"{tens_path}: unreadable safetensors file ({exc})") from exc
        if "top_token_acts" not in t:
            t["top_token_acts"] = _dense_token_acts(t, tens_path)
        for k in _SPARSE:
            t.pop(k, None)
        if "top_windows" in t:
            t["top_windows"] = t["top_windows"].long()  # int32 on disk
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

    def label_inputs(self, tt: TokenText | None = None, n_examples: int = 50,
                     round_to: int | None = 4, features: Tensor | None = None) -> tuple[Tensor, FlatFeatures]:
        """The live latents' (of ``features``, default all) first ``n_examples`` examples as one
        :class:`FlatFeatures`, the arrays the batched labeller reads: ``(live latents, flat)``;
        token texts and (rounded) activations equal :meth:`examples`'
        (``tests/features/test_labels_flat.py``).

        Texts are computed once per window (once per token id for SentencePiece, whose text
        does not depend on the neighbours) and kept for the next call, not once per (latent,
        example, token). Only numpy runs here after the texts are built: the labeller's forked
        workers call this, and torch's OpenMP pool hangs in a forked child.
        """
        from llmjp_ckpt.labels.batch import FlatFeatures

        texts, row_tok = self._window_texts(tt)
        all_wins = self.t["top_windows"].numpy()
        feats = np.arange(len(all_wins)) if features is None else np.asarray(features, np.int64)
        wins = all_wins[feats]
        keep = wins >= 0
        sel = keep & (np.cumsum(keep, axis=1) <= n_examples)
        f_idx, s_idx = np.nonzero(sel)  # latent-major, slots in (descending) order
        n_win = sel.sum(1)
        live_rows = np.flatnonzero(n_win > 0)
        rows = np.searchsorted(self.t["window_ids"].numpy(), wins[f_idx, s_idx])
        tok = row_tok[rows].reshape(-1)
        acts = _rounded(self.t["top_token_acts"].numpy()[feats[f_idx], s_idx].reshape(-1), round_to)
        lens = np.full(len(rows), row_tok.shape[1], np.int64)
        return (torch.from_numpy(feats[live_rows]),
                FlatFeatures(texts, tok, acts, lens, n_win[live_rows].astype(np.int64)))

    def _window_texts(self, tt: TokenText | None) -> tuple[list[str], np.ndarray]:
        """(text table, ``[n_windows, T]`` indices into it) of the stored windows, cached."""
        cached = self.__dict__.get("_texts_cache")
        if cached is not None and cached[0] is tt:
            return cached[1], cached[2]
        first = int(self.meta["first_position"])
        ctx = self.t["window_tokens"][:, first:].long()
        texts: list[str]
        if tt is None or tt.kind == "sentencepiece":  # a token's text alone: one per id
            present = np.flatnonzero(np.bincount(ctx.reshape(-1).numpy().clip(min=0),
                                                 minlength=1)).tolist() if ctx.numel() else []
            texts = [""] * (present[-1] + 1 if present else 0)
            for i in present:
                texts[i] = tt.piece_text(i) if tt else f"<id {i}>"
            row_tok = ctx.clamp(min=0)
        else:  # byte-level BPE: characters across tokens, so the whole window goes through
            table: dict[str, int] = {}
            row_tok = torch.tensor([[table.setdefault(s, len(table)) for s in tt.example_texts(ids)[first:]]
                                    for ids in self.t["window_tokens"].tolist()],
                                   dtype=torch.long).reshape(ctx.shape)
            texts = list(table)
        row_np = row_tok.numpy()
        self.__dict__["_texts_cache"] = (tt, texts, row_np)
        return texts, row_np

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
