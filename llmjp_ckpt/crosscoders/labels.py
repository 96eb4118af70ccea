"""Language and granularity labels of crosscoder latents, per checkpoint.

An acausal crosscoder latent has one activation per token (its encoder reads every checkpoint at
once) and one decoder block per checkpoint. Its examples are its top-N test windows, collected
by the features stage's collector (:func:`llmjp_ckpt.features.topn.collect_topn`) on the
concatenated, per-block unit-normalised activations of the N models (as in training,
:func:`llmjp_ckpt.crosscoders.stream.unit_blocks`), stored as a features-stage top-N store and
labelled by the features stage's labeller (:func:`llmjp_ckpt.features.analyze.feature_rows`:
the labels :func:`llmjp_ckpt.labels.assign.label_feature` gives). What a checkpoint changes is
whether the latent is there: its decoder norm at that checkpoint. So the table has one row per
(checkpoint, latent) with the latent's labels, its relative decoder norm there and ``present``
(≥ the config's ``present`` of its maximum), and the per-checkpoint shares count the labelled
latents present at that checkpoint ("Crosscoding Through Time" reads its latents the same way).

Writes ``RUN/crosscoders/<sae_id>/features/`` (the store) and
``RUN/analysis/crosscoder_features.parquet`` (the table); on a toy run also the crosscoder's view
of the planted concepts (:mod:`llmjp_ckpt.crosscoders.planted`).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from llmjp_ckpt import atomic
from llmjp_ckpt.crosscoders.analysis import relative_norms
from llmjp_ckpt.crosscoders.planted import toy_view
from llmjp_ckpt.crosscoders.stream import unit_blocks
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features.topn import EncodeFn, FeatureTopN, TopNConfig, _layer_of, collect_topn
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.saes.dead import weights_hash

log = logging.getLogger(__name__)

TABLE = "crosscoder_features.parquet"
STORE = "features"  # RUN/crosscoders/<sae_id>/features/
SHARE_COLUMNS = ("language_paper", "language_script", "granularity")
FIGURE = "crosscoder_labels"


def check_inputs(rf: RunFolder) -> None:
    """A :class:`UserError` when the test split the labels read is missing (before any training)."""
    path = rf.path("data", "test")
    if not path.is_dir():
        raise UserError(f"{path}: missing (expected the test split of `llmjp-ckpt prepare-data`; "
                        "or set labels: false in the crosscoder config)")


def crosscoder_encoder(models: Sequence[Any], hook: str, sae: Any, first_position: int = 1) -> EncodeFn:
    """An :data:`~llmjp_ckpt.features.topn.EncodeFn`: every model on the same windows, their
    ``hook`` activations per-block unit-normalised and concatenated, encoded by the crosscoder."""
    layer = _layer_of(hook)
    stop = layer + 1 if layer is not None else None

    @torch.no_grad()
    def encode(toks: Tensor) -> dict[str, Tensor]:
        acts = []
        for model in models:
            dev = next(model.parameters()).device
            _, cache = model.run_with_cache(toks.to(dev), stop_at_layer=stop, names_filter=hook)
            acts.append(cache[hook][:, first_position:].float())
        dev = sae.W_dec.device
        return {"crosscoder": sae.encode(unit_blocks([a.to(dev) for a in acts]))}

    return encode


def collect(models: Sequence[Any], hook: str, sae: Any, tokens: Tensor, cfg: TopNConfig,
            device: str = "cpu") -> FeatureTopN:
    """The crosscoder's top-N windows over ``tokens`` (one pass, all models per batch)."""
    return collect_topn(tokens, crosscoder_encoder(models, hook, sae), {"crosscoder": int(sae.cfg.d_sae)},
                        cfg, desc="crosscoder top-N", device=device)["crosscoder"]


def label_table(store: Any, steps: list[int], norms: np.ndarray, present: float, sae_id: str,
                token_text: Any, n_examples: int = 50, backend: Any = None, workers: int = 1) -> Any:
    """One row per (checkpoint, latent): the latent's labels and statistics (from its store)
    beside its decoder norm at that checkpoint, relative to its largest, and ``present``."""
    import pandas as pd

    from llmjp_ckpt.features.analyze import feature_rows

    base = pd.DataFrame(feature_rows(store, steps[0], sae_id, token_text, n_examples, backend, workers))
    rel = relative_norms(norms)
    parts = []
    for i, step in enumerate(steps):
        part = base.copy()
        part["checkpoint"] = step
        part["decoder_norm"] = norms[:, i].astype(float)
        part["relative_norm"] = rel[:, i].astype(float)
        part["present"] = rel[:, i] >= present
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def shares(df: Any) -> list[dict[str, Any]]:
    """Per checkpoint: latents present, labelled, and each label's share among the labelled
    present latents (``<column>=<label>`` keys, flat for the site's tables)."""
    rows = []
    for step, g in df.groupby("checkpoint", sort=True):
        here = g[g["present"]]
        lab = here.dropna(subset=["language_paper"])
        row: dict[str, Any] = {"checkpoint": int(step), "present": len(here), "labelled": len(lab)}
        for col in SHARE_COLUMNS:
            vals = lab[col].dropna()
            for label, share in vals.value_counts(normalize=True).sort_index().items():
                row[f"{col}={label}"] = float(share)
        rows.append(row)
    return rows


def figure(rows: list[dict[str, Any]], sae_id: str) -> Any:
    """Stacked label shares of the present latents per checkpoint (language, granularity)."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    cols = ("language_paper", "granularity")
    fig = make_subplots(rows=1, cols=2, subplot_titles=[f"{c} (present latents)" for c in cols],
                        shared_yaxes=True)
    x = [str(r["checkpoint"]) for r in rows]
    for j, col in enumerate(cols, start=1):
        labels = sorted({k.split("=", 1)[1] for r in rows for k in r if k.startswith(f"{col}=")})
        for label in labels:
            fig.add_trace(go.Bar(x=x, y=[r.get(f"{col}={label}", 0.0) for r in rows], name=label,
                                 legendgroup=col, legendgrouptitle_text=col), row=1, col=j)
    fig.update_layout(barmode="stack", title=f"Crosscoder {sae_id}: labels of the latents present at each "
                      "checkpoint", yaxis_title="share", width=1000, height=450)
    fig.update_xaxes(type="category", title_text="checkpoint")
    return fig


def label_crosscoder(rf: RunFolder, folder: Path, sae: Any, models: Sequence[Any], hook: str,
                     steps: list[int], norms: np.ndarray, cfg: Any, token_text: Any = None,
                     ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Top-N store, label table and per-checkpoint shares of the crosscoder in ``folder``;
    returns (the ``labels`` part of crosscoder.json, its figures)."""
    from llmjp_ckpt.features import store as fstore
    from llmjp_ckpt.features.analyze import FeaturesConfig, _token_text_of, label_workers, load_test_tokens
    from llmjp_ckpt.labels.granularity import backend_from_params

    tokens = load_test_tokens(rf.root, cfg.label_windows)
    topn = TopNConfig(cfg.n_top, cfg.batch_windows)
    sae = sae.to(cfg.device)
    res = collect(models, hook, sae, tokens, topn, cfg.device)
    wh = weights_hash(folder)
    store_dir = fstore.save_store(folder / STORE, res, tokens,
                                  {"steps": steps, "sae_id": cfg.sae_id, "hook_name": hook,
                                   "sae_weights_hash": wh, "crosscoder": True})
    tt = token_text or _token_text_of(models[0])
    st = fstore.FeatureStore.load(store_dir)
    df = label_table(st, steps, norms, cfg.present, cfg.sae_id, tt,
                     cfg.n_top, backend_from_params(None), label_workers(FeaturesConfig()))
    buf = io.BytesIO()
    df.to_parquet(buf, index=False)
    table = rf.path("analysis", TABLE)
    atomic.write_bytes(table, buf.getvalue())
    rows = shares(df)
    live = int((df[df["checkpoint"] == steps[0]]["language_paper"].notna()).sum())
    out = {"n_labelled": live, "n_windows": len(tokens), "n_top": cfg.n_top,
           "store": str(store_dir.relative_to(rf.root)), "table": str(table.relative_to(rf.root)),
           "sae_weights_hash": wh, "per_checkpoint": rows}
    view = toy_view(rf.root, st, df, steps)  # the planted concepts: None off the toy
    if view is not None:
        out["planted"] = view
    return out, {FIGURE: figure(rows, cfg.sae_id)}
