"""The ``features`` stage: top-N stores for every SAE, ``RUN/analysis/features.parquet``, figures.

For each checkpoint the model runs once per batch of test windows and every SAE trained on that
checkpoint encodes the same activations (:func:`llmjp_ckpt.features.topn.collect_topn`). Each
latent then gets its statistics and, from its top examples in the study's format, its language
by both rules and its granularity (:func:`llmjp_ckpt.labels.assign.label_feature`).
"""

from __future__ import annotations

import dataclasses
import io
import logging
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
from llmjp_ckpt.labels.assign import label_feature
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
    norm_study: bool = True  # also run the norm study (RUN/analysis/norms.json)
    norm_windows: int = 256  # test windows used by the norm study
    model: str | None = None  # model name or folder; None: from the SAEs' cfg.json
    checkpoint_root: str | None = None  # local root of iter_* checkpoints, if any
    png: bool = True  # also render PNGs (needs a Chrome for kaleido; skipped with a log line)
    trust_pickle: bool = False  # allow pickle (.bin/.pt) checkpoint weights: trusted files only

    def __post_init__(self) -> None:
        self.topn()  # validates the top-N fields
        from llmjp_ckpt.devices import check_dtype

        check_dtype(self.dtype, "features config: dtype")
        if self.max_windows is not None and self.max_windows < 1:
            raise UserError(f"features config: max_windows={self.max_windows}, expected >= 1 or null")

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
                 n_examples: int = 50, backend: Any = None) -> list[dict[str, Any]]:
    """One row per latent: statistics from the store, labels from its top examples.

    A dead latent has no examples and keeps ``None`` labels (:func:`labels.assign.label_feature`).
    """
    freq, mx, mean = st.frequency.tolist(), st.t["max_activation"].tolist(), st.mean_activation.tolist()
    rows = []
    for f in tqdm(range(st.d_sae), desc=f"labels {step_dir(step)}/{sae_id}", leave=False):
        row: dict[str, Any] = {
            "checkpoint": step, "sae_id": sae_id, "feature": f, "frequency": freq[f],
            "max_activation": mx[f], "mean_activation": mean[f],
        }
        row.update(label_feature(st.examples(f, tt)[:n_examples], backend=backend))
        row["sae_weights_hash"] = st.meta.get("sae_weights_hash")
        rows.append(row)
    return rows


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
    stage_cfg = {"features": without_runtime(dataclasses.asdict(cfg)),  # device/dtype: not hashed
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
        rows: list[dict[str, Any]] = []
        norms: list[dict[str, Any]] = []
        norm_tokens = tokens[: cfg.norm_windows]
        for step in tqdm(sorted(all_saes), desc="features: checkpoints"):
            model, stores = run_step(run, step, all_saes[step], cfg, loader, tokens, force)
            tt = token_text or _token_text_of(model)
            for sid, folder in stores.items():
                rows += feature_rows(fstore.FeatureStore.load(folder), step, sid, tt,
                                     cfg.label_examples, gran_backend)
            if cfg.norm_study:
                norms += normstudy.norm_rows(normstudy.layer_norms(model, norm_tokens, cfg.batch_size),
                                             normstudy.token_types(norm_tokens, tt), step)
            del model
        df = pd.DataFrame(rows, columns=COLUMNS)
        buf = io.BytesIO()
        df.to_parquet(buf, index=False)
        atomic.write_bytes(parquet, buf.getvalue())
        figures = write_figures(df, run / "analysis" / "figures", cfg.png)
        if cfg.norm_study:
            figures += normstudy.write_norm_study(run, norms, cfg.png)
        stage.info.update(steps=sorted(all_saes), n_features=len(df),
                          outputs=[str(p.relative_to(run)) for p in [parquet, *figures]])
    return parquet


def _token_text_of(model: Any) -> TokenText | None:
    tok = getattr(model, "tokenizer", None)
    return TokenText.from_hf(tok) if tok is not None else None


# --- figures --------------------------------------------------------------------------------
def write_figures(df: Any, out_dir: Path, png: bool = True) -> list[Path]:
    """Firing-frequency distributions and label shares per checkpoint."""
    import numpy as np
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

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
        ids = sorted(df["sae_id"].unique())
        fig = make_subplots(rows=1, cols=len(ids), subplot_titles=ids, shared_yaxes=True)
        shares = (df.dropna(subset=[col]).groupby(["sae_id", "checkpoint"])[col]
                  .value_counts(normalize=True).rename("share").reset_index())
        for i, sid in enumerate(ids, start=1):
            s = shares[shares["sae_id"] == sid]
            for c, label in enumerate(sorted(shares[col].unique())):
                part = s[s[col] == label]
                fig.add_trace(go.Bar(x=[step_dir(x) for x in part["checkpoint"]], y=part["share"],
                                     name=str(label), legendgroup=str(label), showlegend=i == 1,
                                     marker_color=PALETTE[c % len(PALETTE)]),
                              row=1, col=i)
        fig.update_layout(barmode="stack", title=f"{title}: share of live latents per checkpoint",
                          yaxis_title="share")
        figs[f"features_{col}"] = fig
    return [Path(f) for paths in plotting.write_figures(figs, out_dir, png).values() for f in paths]
