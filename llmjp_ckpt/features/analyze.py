"""The ``features`` stage: top-N stores for every SAE, ``RUN/analysis/features.parquet``, figures.

For each checkpoint the model runs once per batch of test windows and every SAE trained on that
checkpoint encodes the same activations (:func:`llmjp_ckpt.features.topn.collect_topn`). Each
latent then gets its statistics and, from its top examples in the study's format, its language
by both rules and its granularity: all latents of an SAE in one call of the batched labeller
(:func:`llmjp_ckpt.labels.batch.label_features`, the same labels as
:func:`llmjp_ckpt.labels.assign.label_feature` gives one latent at a time).
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from llmjp_ckpt import atomic, config, plotting
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.features import normstudy
from llmjp_ckpt.features import store as fstore
from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
from llmjp_ckpt.labels.assign import LABEL_COLUMNS
from llmjp_ckpt.labels.batch import label_features
from llmjp_ckpt.runfolder import RunFolder, config_hash, sae_folders, step_dir
from llmjp_ckpt.saes.dead import weights_hash
from llmjp_ckpt.tokens import TokenText

log = logging.getLogger(__name__)
STAGE = "features"
COLUMNS = [
    "checkpoint", "sae_id", "feature", "frequency", "max_activation", "mean_activation",
    "language_paper", "language_script", "granularity", "granularity_confidence",
    "sae_weights_hash",  # saes.dead.weights_hash of the SAE the row (and its labels) came from
]
PALETTE = ("#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3")
ModelLoader = Callable[[int], Any]  # step -> HookedTransformer


@dataclass(frozen=True)
class FeaturesConfig:
    """The features stage's settings (``configs/features.yaml``)."""

    n_top: int = 50  # examples per latent, as in the study
    batch_size: int = 32  # windows per forward pass
    max_windows: int | None = None  # use only the first N test windows (None: all)
    device: str = "cpu"  # where the model and SAEs run (cpu, cuda, cuda:N; not hashed)
    dtype: str = "float32"  # the model's dtype: float32 / bfloat16 / float16; SAEs stay fp32 (not hashed)
    label_examples: int = 50  # top examples handed to the language/granularity labels
    granularity_params: str | None = None  # thresholds file from `label --fit`; None: shipped
    # synonym by meaning from the model itself: two max-token forms relate when their input
    # embeddings (W_E of the *last* checkpoint) have cosine >= this; None: off (docs/labels-eval.md)
    granularity_embed_threshold: float | None = None
    norm_study: bool = True  # also run the norm study (RUN/analysis/norms.json)
    norm_windows: int = 256  # test windows used by the norm study
    model: str | None = None  # model name or folder; None: from the SAEs' cfg.json
    checkpoint_root: str | None = None  # local root of iter_* checkpoints, if any
    png: bool = True  # also render PNGs (needs a Chrome for kaleido; skipped with a log line)
    trust_pickle: bool = False  # allow pickle (.bin/.pt) checkpoint weights: trusted files only
    label_workers: int | None = None  # processes for labelling; None: the CPUs (not hashed)

    def __post_init__(self) -> None:
        self.topn()  # validates the top-N fields
        from llmjp_ckpt.devices import check_dtype

        check_dtype(self.dtype, "features config: dtype")
        if self.max_windows is not None and self.max_windows < 1:
            raise UserError(f"features config: max_windows={self.max_windows}, expected >= 1 or null")
        if self.label_workers is not None and self.label_workers < 1:
            raise UserError(f"features config: label_workers={self.label_workers}, expected >= 1 or null")
        t = self.granularity_embed_threshold
        if t is not None and not -1.0 < t <= 1.0:
            raise UserError(f"features config: granularity_embed_threshold={t}, expected a cosine "
                            "in (-1, 1] or null")

    def topn(self) -> TopNConfig:
        return TopNConfig(self.n_top, self.batch_size)

    @classmethod
    def from_yaml(cls, path: str | Path) -> FeaturesConfig:
        return config.load(cls, path)


# --- discovery ------------------------------------------------------------------------------
def discover_saes(run: Path) -> dict[int, dict[str, Path]]:
    """``{step: {sae_id: folder}}`` for every finished SAE under ``RUN/saes``."""
    out: dict[int, dict[str, Path]] = {}
    for step, sae_id, folder in sae_folders(run):
        out.setdefault(step, {})[sae_id] = folder
    return out


def load_test_tokens(run: Path, max_windows: int | None = None) -> torch.Tensor:
    """The test split's ``input_ids`` as a ``[n_windows, L]`` tensor."""
    import datasets

    path = run / "data" / "test"
    if not path.exists():
        raise UserError(f"{path}: missing (expected the test split written by `llmjp-ckpt prepare-data`)")
    ds = datasets.load_from_disk(str(path))
    if "input_ids" not in ds.column_names:
        raise UserError(f"{path}: column 'input_ids' missing (has {ds.column_names})")
    if max_windows is not None:
        ds = ds.select(range(min(max_windows, len(ds))))
    ids = ds["input_ids"]
    if not ids or len({len(r) for r in ids}) != 1:
        raise UserError(f"{path}: 'input_ids' must be non-empty windows of one length")
    return torch.tensor(ids, dtype=torch.long)


def default_model_loader(run: Path, cfg: FeaturesConfig, sae_dir: Path) -> ModelLoader:
    """Load each checkpoint with :func:`llmjp_ckpt.models.adapter.load_model` from the config, else from
    the model name recorded in the SAEs' ``cfg.json`` metadata."""

    from llmjp_ckpt.models.adapter import load_model

    source, root, trust = cfg.model, cfg.checkpoint_root, cfg.trust_pickle
    train = (RunFolder(run).stage_record("train") or {}).get("config", {})
    model_cfg = (train.get("config") or {}).get("model") or {}  # the train stage's TrainConfig
    if source is None and model_cfg.get("source"):
        source = model_cfg["source"]
        root = root or model_cfg.get("checkpoint_root")
        trust = trust or bool(model_cfg.get("trust_pickle"))  # the model train was allowed
    if source is None:
        meta = config.read_json(sae_dir / "cfg.json").get("metadata", {})
        source = meta.get("model_name")
        kwargs = meta.get("model_from_pretrained_kwargs") or {}
        root = root or kwargs.get("checkpoint_root")
    if not source:
        raise UserError(f"{sae_dir / 'cfg.json'}: metadata.model_name missing; set `model` in the features config")
    from llmjp_ckpt.devices import torch_dtype

    dtype = torch_dtype(cfg.dtype)
    return lambda step: load_model(source, step, checkpoint_root=root, device=cfg.device,
                                   trust_pickle=trust, dtype=dtype)


# --- labels ---------------------------------------------------------------------------------
def feature_rows(st: fstore.FeatureStore, step: int, sae_id: str, tt: TokenText | None,
                 n_examples: int = 50, backend: Any = None, workers: int = 1) -> list[dict[str, Any]]:
    """One row per latent: statistics from the store, labels from its top examples.

    Every latent of the SAE is labelled in one call of the batched labeller
    (:func:`llmjp_ckpt.labels.batch.label_features`, ``workers`` processes) on the store's
    arrays (:meth:`~llmjp_ckpt.features.store.FeatureStore.label_inputs`); the labels equal
    :func:`labels.assign.label_feature`'s on :meth:`~FeatureStore.examples` (tested). A dead
    latent has no examples and keeps ``None`` labels.
    """
    from llmjp_ckpt.labels.granularity import RuleBackend

    freq, mx, mean = st.frequency.tolist(), st.t["max_activation"].tolist(), st.mean_activation.tolist()
    live = (st.t["top_windows"] >= 0).any(1).nonzero().squeeze(1)
    if n_examples < 1:  # no examples handed to the labels: none labelled, as label_feature([])
        live = live[:0]
    log.info("labelling %d live latents of %s/%s (%d workers)", len(live), step_dir(step), sae_id, workers)
    labels: list[dict[str, Any]] = [dict.fromkeys(LABEL_COLUMNS) for _ in range(st.d_sae)]
    src: Any = fstore.LabelInputs(st, tt, n_examples, live)
    if backend is not None and not isinstance(backend, RuleBackend):  # a judge: feature by feature
        src = src.slice(0, len(live))
    for f, lab in zip(live.tolist(), label_features(src, backend, workers=workers,
                                                    desc=f"labels {step_dir(step)}/{sae_id}")):
        labels[f] = {"language_paper": lab.language_paper, "language_script": lab.language_script,
                     "granularity": lab.granularity,
                     "granularity_confidence": None if lab.confidence is None else float(lab.confidence)}
    return [{"checkpoint": step, "sae_id": sae_id, "feature": f, "frequency": freq[f],
             "max_activation": mx[f], "mean_activation": mean[f], **labels[f],
             "sae_weights_hash": st.meta.get("sae_weights_hash")} for f in range(st.d_sae)]


def label_workers(cfg: FeaturesConfig) -> int:
    """Processes for labelling: the config's, else the CPUs this process may use."""
    if cfg.label_workers is not None:
        return cfg.label_workers
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# --- the stage ------------------------------------------------------------------------------
def run_step(run: Path, step: int, saes: dict[str, Path], cfg: FeaturesConfig,
             loader: ModelLoader, tokens: torch.Tensor, force: bool = False) -> tuple[Any, dict[str, Path]]:
    """Top-N stores for the SAEs of one checkpoint (skipping complete ones unless ``force``);
    returns the model."""
    import llmjp_ckpt  # noqa: F401  registers the token-norm SAE architecture before loading
    from llmjp_ckpt.weights import load_sae

    # a store's key: the top-N config, the windows and the SAE's weights (a retrain recomputes)
    base = {**dataclasses.asdict(cfg.topn()), "n_windows": len(tokens)}
    wh = {sid: weights_hash(p) for sid, p in saes.items()}
    h = {sid: config_hash({**base, "sae_weights_hash": wh[sid]}) for sid in saes}
    out = {sid: run / "features" / step_dir(step) / sid for sid in saes}
    todo = {sid: p for sid, p in saes.items() if force or not _store_current(out[sid], h[sid])}
    model = loader(step)
    if todo:
        loaded = {sid: load_sae(p, cfg.device) for sid, p in todo.items()}  # bad file: one line
        enc = model_encoder(model, loaded)
        res = collect_topn(tokens, enc, {k: s.cfg.d_sae for k, s in loaded.items()}, cfg.topn(),
                           desc=step_dir(step), device=cfg.device)
        for sid, r in res.items():
            hook = loaded[sid].cfg.metadata.hook_name
            fstore.save_store(out[sid], r, tokens, {"step": step, "sae_id": sid, "hook_name": hook,
                                                    "config_hash": h[sid],
                                                    "sae_weights_hash": wh[sid]})
    return model, out


def _store_current(folder: Path, h: str) -> bool:
    if not fstore.is_complete(folder):
        return False
    try:
        return fstore.FeatureStore.load(folder).meta.get("config_hash") == h
    except UserError:
        return False


def analyze_run(run_dir: str | Path, cfg: FeaturesConfig | None = None, *,
                model_loader: ModelLoader | None = None, token_text: TokenText | None = None,
                force: bool = False) -> Path:
    """Run the features stage on ``run_dir``; return the path of ``features.parquet``."""
    import pandas as pd

    cfg = cfg or FeaturesConfig()
    from llmjp_ckpt.devices import check, without_runtime

    check(cfg.device, cfg.dtype)  # before anything is written
    rf = RunFolder(run_dir)
    run = rf.root
    parquet = run / "analysis" / "features.parquet"
    all_saes = discover_saes(run)
    # the stage is done for this config *and* these SAEs (a retrain or a new checkpoint reruns it)
    from llmjp_ckpt.labels.granularity import backend_from_params

    gran_backend = backend_from_params(cfg.granularity_params,
                                       "features config: granularity_params")
    confusion = _confusion_of(cfg.granularity_params)
    hashed = {k: v for k, v in dataclasses.asdict(cfg).items() if k != "label_workers"}
    if cfg.granularity_embed_threshold is None:
        hashed.pop("granularity_embed_threshold")  # off: runs from before the option keep their hash
    stage_cfg = {"features": without_runtime(hashed),  # device/dtype/label_workers: not hashed
                 "granularity_thresholds": dataclasses.asdict(gran_backend.params),
                 "saes": [f"{step_dir(st)}/{sid}" for st in sorted(all_saes) for sid in sorted(all_saes[st])],
                 "train_config_hash": (rf.stage_record("train") or {}).get("config_hash"),
                 "sae_weights_hashes": {f"{step_dir(st)}/{sid}": weights_hash(p)
                                        for st in sorted(all_saes)
                                        for sid, p in all_saes[st].items()}}
    with rf.stage(STAGE, stage_cfg, force=force, outputs=[parquet]) as stage:
        if stage.skipped:
            return parquet
        tokens = load_test_tokens(run, cfg.max_windows)
        first = next(iter(next(iter(all_saes.values())).values()))
        loader = model_loader or default_model_loader(run, cfg, first)
        if cfg.granularity_embed_threshold is not None:
            gran_backend = embedding_backend(gran_backend, loader(max(all_saes)),
                                             cfg.granularity_embed_threshold)
            if confusion is not None:
                log.warning("granularity: the share intervals use the LOCO confusion measured "
                            "without the embeddings (the dev file has no model to measure them)")
        rows: list[dict[str, Any]] = []
        norms: list[dict[str, Any]] = []
        norm_tokens = tokens[: cfg.norm_windows]
        for step in tqdm(sorted(all_saes), desc="features: checkpoints"):
            model, stores = run_step(run, step, all_saes[step], cfg, loader, tokens, force)
            tt = token_text or _token_text_of(model)
            for sid, folder in stores.items():
                rows += feature_rows(fstore.FeatureStore.load(folder), step, sid, tt,
                                     cfg.label_examples, gran_backend, label_workers(cfg))
            if cfg.norm_study:
                norms += normstudy.norm_rows(normstudy.layer_norms(model, norm_tokens, cfg.batch_size),
                                             normstudy.token_types(norm_tokens, tt), step)
            del model
        df = pd.DataFrame(rows, columns=COLUMNS)
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic.write_bytes(parquet, buf.getvalue())
        figures = write_figures(df, run / "analysis" / "figures", cfg.png, confusion)
        if cfg.norm_study:
            figures += normstudy.write_norm_study(run, norms, cfg.png)
        stage.info.update(steps=sorted(all_saes), n_features=len(df), granularity_confusion=confusion,
                          outputs=[str(p.relative_to(run)) for p in [parquet, *figures]])
    return parquet


def embedding_backend(backend: Any, model: Any, threshold: float) -> Any:
    """``backend`` with the model's own input embeddings as a synonym relation (``W_E`` rows of
    the tokenizer's pieces, cosine >= ``threshold``; :func:`labels.granularity.embedder_from_model`)."""
    from llmjp_ckpt.labels.granularity import RuleBackend, embedder_from_model

    try:
        embed = embedder_from_model(model)
    except ValueError as exc:
        raise UserError(f"features config: granularity_embed_threshold needs the model's tokenizer: {exc}") from None
    log.info("granularity: input embeddings of the last checkpoint as a synonym relation "
             "(%d x %d, cosine >= %s)", *model.W_E.shape, threshold)
    return RuleBackend(params=backend.params, embed=embed, embed_threshold=threshold)


def _confusion_of(params_path: str | None) -> list[list[int]] | None:
    """The LOCO confusion recorded with the thresholds in use (for the share intervals)."""
    from llmjp_ckpt.labels.uncertainty import load_confusion

    try:
        return load_confusion(params_path)
    except ValueError as exc:
        raise UserError(f"features config: granularity_params: {exc}") from None


def _token_text_of(model: Any) -> TokenText | None:
    tok = getattr(model, "tokenizer", None)
    return TokenText.from_hf(tok) if tok is not None else None


# --- figures --------------------------------------------------------------------------------
def write_figures(df: Any, out_dir: Path, png: bool = True, confusion: Any = None) -> list[Path]:
    """Firing-frequency distributions and label shares per checkpoint (``confusion``: the
    granularity classifier's LOCO confusion, drawn into that figure's bands)."""
    import numpy as np
    import plotly.graph_objects as go

    fig = go.Figure()
    for (step, sid), g in df.groupby(["checkpoint", "sae_id"], sort=True):
        f = g["frequency"].to_numpy()
        fig.add_trace(go.Histogram(x=np.log10(f[f > 0]), name=f"{step_dir(step)} {sid}",
                                   opacity=0.6, nbinsx=50))
    fig.update_layout(barmode="overlay", title="Latent firing frequency per checkpoint",
                      xaxis_title="log10 firing frequency (dead latents left out)",
                      yaxis_title="latents")
    figs = {"features_frequency": fig}
    for col, title in (("language_paper", "Language (paper rule)"),
                       ("language_script", "Language (script rule)"),
                       ("granularity", "Granularity")):
        if df[col].notna().sum() == 0:
            continue
        figs[f"features_{col}"] = share_figure(df, col, title,
                                               confusion=confusion if col == "granularity" else None)
    return [Path(f) for paths in plotting.write_figures(figs, out_dir, png).values() for f in paths]


def short_titles(ids: list[str]) -> tuple[list[str], str]:
    """Subplot titles without the ``_``-separated prefix all ``ids`` share, and that prefix
    (long SAE ids side by side overlapped: ``x4_k8_lr0.003_standardization``)."""
    parts = [i.split("_") for i in ids]
    n = 0
    while len(ids) > 1 and all(len(p) > n + 1 for p in parts) and len({p[n] for p in parts}) == 1:
        n += 1
    return ["_".join(p[n:]) for p in parts], "_".join(parts[0][:n])


def share_figure(df: Any, col: str, title: str, n_boot: int = 1000, level: float = 0.95,
                 confusion: Any = None) -> Any:
    """Each label's share of the live latents over checkpoints, one panel per SAE, with its
    bootstrap interval (:func:`llmjp_ckpt.labels.uncertainty.share_intervals`: latents
    resampled and, given the classifier's LOCO ``confusion``, each one's true class drawn
    through it) as a band; the line is the share as labelled."""
    import math

    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    from llmjp_ckpt.labels.uncertainty import share_intervals

    ids = sorted(df["sae_id"].unique())
    live = df.dropna(subset=[col])
    classes = sorted(live[col].astype(str).unique())
    titles, shared = short_titles(ids)
    cols = min(3, len(ids))
    rows = math.ceil(len(ids) / cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, shared_yaxes=True,
                        horizontal_spacing=0.06, vertical_spacing=0.22 / max(rows, 1) + 0.08)
    for i, sid in enumerate(ids):
        part = live[live["sae_id"] == sid]
        steps = sorted(part["checkpoint"].unique())
        iv = share_intervals({st: part.loc[part["checkpoint"] == st, col].astype(str).tolist() for st in steps},
                             confusion, classes=classes, n_boot=n_boot, level=level)
        drawn = list(iv[steps[0]])  # with a confusion, also true classes nobody was labelled
        x = [f"{st:,}" for st in steps]  # the step (iter_0000100 is 100): short under narrow panels
        r, c = i // cols + 1, i % cols + 1
        for k, label in enumerate(drawn):
            color = PALETTE[k % len(PALETTE)]
            lo = [iv[st][label].lo for st in steps]
            hi = [iv[st][label].hi for st in steps]
            fig.add_trace(go.Scatter(x=x + x[::-1], y=hi + lo[::-1], fill="toself", fillcolor=color,
                                     mode="lines", opacity=0.2, line={"width": 0}, hoverinfo="skip",
                                     legendgroup=label, showlegend=False, name=f"{label} {level:.0%} interval"),
                          row=r, col=c)
            fig.add_trace(go.Scatter(x=x, y=[iv[st][label].share for st in steps], mode="lines+markers",
                                     name=label, legendgroup=label, showlegend=i == 0,
                                     line={"color": color},
                                     customdata=list(zip(lo, hi)),
                                     hovertemplate=f"{label}: %{{y:.3f}} [%{{customdata[0]:.3f}}–"
                                                   f"%{{customdata[1]:.3f}}]<extra>%{{x}}</extra>"),
                          row=r, col=c)
    fig.update_xaxes(type="category", title_text="checkpoint (training step)", title_font_size=11)
    fig.update_yaxes(range=[0, 1])
    fig.update_yaxes(title_text="share", col=1)
    fig.update_annotations(font_size=12)
    head = f"{title}: share of live latents per checkpoint" + (f" ({shared})" if shared else "")
    band = ("over latents and the classifier's LOCO confusion (a band off its line: a known bias)"
            if confusion is not None else "over latents")
    fig.update_layout(title=f"{head}<br><sup>lines: shares as labelled; bands: {level:.0%} "
                            f"bootstrap intervals {band}</sup>",
                      height=360 * rows + 140, margin={"t": 110})
    return fig



