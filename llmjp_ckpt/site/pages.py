"""The cross-checkpoint site under ``RUN/dashboards/``, opening at ``index.html`` from ``file://``.

Pages (all static, all corpus text escaped through :mod:`llmjp_ckpt.site.escape`):

- ``index.html``: the checkpoints and their SAE metrics, the tables of ``transitions.json``,
  the figures of ``RUN/analysis/figures/`` (hard-linked or copied into ``figures/``, shown one
  at a time in a frame), the lineages, links to every browser page;
- ``browser/iter_XXXXXXX__<sae_id>.html``: a feature browser per checkpoint and SAE, like the
  study's demo: selected features with language, granularity, frequency, and their top
  examples with activation highlighting; filters run in a small inline script that only reads
  ``data-*`` attributes;
- ``lineages/lineage_<n>.html``: one feature's examples across checkpoints, side by side (chains
  from the compare stage's ``RUN/analysis/lineages/<sae_id>.parquet``);
- ``features/iter_XXXXXXX/<sae_id>/feature_<N>.html``: sae-dashboard pages
  (:mod:`llmjp_ckpt.site.feature_pages`), scripts from ``assets/``, computed over the top-N
  store's windows (:func:`llmjp_ckpt.site.inputs.dashboard_tokens`): each page's top example
  is the store's.

Live/dead counts come from :mod:`llmjp_ckpt.saes.dead`; a store whose ``sae_weights_hash`` is
not its SAE's is refused.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from llmjp_ckpt import atomic
from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, step_dir
from llmjp_ckpt.saes.dead import alive_mask, weights_hash
from llmjp_ckpt.site.config import SiteConfig
from llmjp_ckpt.site.escape import text
from llmjp_ckpt.site.inputs import (
    Example,
    Lineage,
    check_store_current,
    dashboard_tokens,
    inputs_fingerprint,
    lineage_members,
    load_features_table,
    load_lineages,
    load_metrics,
    resolve_token_text,
    select_features,
    store_examples,
)
from llmjp_ckpt.site.render import (
    FILTER_JS,
    browser_name,
    feature_block,
    feature_href,
    options,
    page,
    tables,
)
from llmjp_ckpt.tokens import TokenText

__all__ = ["SITE_DIR", "STAGE", "SiteConfig", "build_site", "features_model_loader"]

log = logging.getLogger(__name__)
STAGE = "site"
SITE_DIR = "dashboards"
ModelLoader = Callable[[int], Any]  # step -> HookedTransformer


# --- building -------------------------------------------------------------------------------
def _rows(df: Any) -> dict[tuple[int, str, int], dict[str, Any]]:
    return {(int(r["checkpoint"]), str(r["sae_id"]), int(r["feature"])): r
            for r in df.to_dict("records")}


def _scalar_metrics(metrics: dict[tuple[int, str], dict[str, Any]]) -> list[str]:
    keys: list[str] = []
    for m in metrics.values():
        for k, v in m.items():
            if isinstance(v, (int, float, str, bool)) and not isinstance(v, bool) and k not in keys:
                keys.append(k)
    return keys


def _transitions_summary(path: Path) -> str:
    if not path.is_file():
        return "<p>No transitions.json yet (run <code>llmjp-ckpt compare</code>).</p>"
    return "".join(tables(read_json(path), "")) + '<p><a href="data/transitions.json">transitions.json</a></p>'


def _copy_inputs(run: Path, out: Path) -> list[Path]:
    """Copy the compare/feature figures and transitions.json into the site folder."""
    from llmjp_ckpt.site.index_page import copy_figures

    figs = copy_figures(run, out)  # plotly.js relinked to the one assets/plotly.min.js
    tj = run / "analysis" / "transitions.json"
    if tj.is_file():
        shutil.copyfile(tj, out / "data" / "transitions.json")
    return figs


def _render_feature_pages(run: Path, out: Path, saes: dict[int, dict[str, Path]],
                          selected: dict[tuple[int, str], list[int]], cfg: SiteConfig,
                          loader: ModelLoader | None, tt: TokenText,
                          stores: dict[tuple[int, str], Any]) -> dict[tuple[int, str, int], str]:
    from tqdm.auto import tqdm

    from llmjp_ckpt.features.analyze import load_test_tokens
    from llmjp_ckpt.site import assets
    from llmjp_ckpt.site.feature_pages import write_feature_pages

    if assets.d3_js() is None:
        log.warning("site: d3 not found (%s or $%s; run `make setup`): sae-dashboard pages skipped",
                    assets.D3_VENDOR, assets.D3_ENV)
        return {}
    import torch

    import llmjp_ckpt  # noqa: F401  registers the token-norm SAE architecture before loading
    from llmjp_ckpt.weights import load_sae

    assets.copy_assets(out / "assets")
    if loader is None:
        raise ValueError("a model loader is needed for the sae-dashboard pages")
    test = load_test_tokens(run, cfg.dashboard_windows)
    links: dict[tuple[int, str, int], str] = {}
    for step in tqdm(sorted(saes), desc="site: sae-dashboard pages"):
        # no store: no examples to agree with; a checkpoint with no page to render loads nothing
        todo = {sid: folder for sid, folder in saes[step].items()
                if selected.get((step, sid)) and stores.get((step, sid)) is not None}
        if not todo:
            continue
        model = loader(step)  # once for all this checkpoint's SAEs
        for sid, folder in todo.items():
            feats = selected[(step, sid)][: cfg.max_feature_pages]
            store = stores[(step, sid)]
            # the store's top windows (and the test windows): each page's top example is the store's
            tokens = dashboard_tokens(store, feats, test).to(cfg.device)
            sae = load_sae(folder, cfg.device)  # a bad weights file: one line, no traceback
            with torch.no_grad():
                pages = write_feature_pages(
                    sae, model, tokens, feats, out / "features" / step_dir(step) / sid, tt,
                    "../../../assets", title=f"{step_dir(step)} / {sid}",
                    back_href=f"../../../{'browser/' + browser_name(step, sid)}",
                    sae_weights_hash=store.meta.get("sae_weights_hash"))
            for f in pages:
                links[(step, sid, f)] = feature_href(step, sid, f)
        del model
    return links


def _write_site(run: Path, out: Path, cfg: SiteConfig, saes: dict[int, dict[str, Path]], df: Any,
                lineages: list[Lineage], tt: TokenText, loader: ModelLoader | None) -> dict[str, Any]:
    from llmjp_ckpt.features.store import FeatureStore, is_complete

    for sub in ("browser", "lineages", "figures", "data", "features", "assets", "catalog"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = _rows(df)
    members = lineage_members(lineages)
    selected = {}
    for step, by_id in saes.items():
        for sid in by_id:
            part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
            selected[(step, sid)] = select_features(part, cfg, members.get((step, sid), set()))
    stores = {}
    for step, by_id in saes.items():
        for sid, sae_folder in by_id.items():
            folder = run / "features" / step_dir(step) / sid
            stores[(step, sid)] = FeatureStore.load(folder) if is_complete(folder) else None
            if stores[(step, sid)] is not None:  # a retrained SAE: its examples are stale
                check_store_current(stores[(step, sid)], sae_folder)
    links = (_render_feature_pages(run, out, saes, selected, cfg, loader, tt, stores)
             if cfg.feature_pages else {})

    def examples(step: int, sid: str, f: int) -> list[Example]:
        st = stores.get((step, sid))
        return store_examples(st, f, tt, cfg.n_examples) if st is not None and f < st.d_sae else []

    lineage_of = {(m.step, m.sae_id, m.feature): f"../lineages/lineage_{i}.html"
                  for i, lin in enumerate(lineages) for m in lin.members}
    # feature browsers
    for (step, sid), feats in selected.items():
        part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
        langs = sorted({str(v) for v in part["language_script"].dropna()})
        grans = sorted({str(v) for v in part["granularity"].dropna()})
        filters = (f'<div class="filters"><label>language <select id="f-lang">{options(langs)}</select></label>'
                   f'<label>granularity <select id="f-gran">{options(grans)}</select></label>'
                   '<label>min frequency <input id="f-freq" type="number" step="0.0001" value="0"></label></div>')
        note = (
            ""
            if stores.get((step, sid))
            else "<p>No top-N store for this SAE (run <code>llmjp-ckpt features</code>).</p>"
        )
        note += ('<p class="meta">SAE weights hash '
                 f'<code>{text(weights_hash(saes[step][sid]))}</code></p>')
        blocks = []
        for f in feats:
            row = rows.get((step, sid, f), {"feature": f})
            link = links.get((step, sid, f))
            blocks.append(feature_block(row, examples(step, sid, f), cfg.context,
                                        f"../{link}" if link else None, f"feature {f}",
                                        lineage_of.get((step, sid, f))))
        body = (f"<p>{len(feats)} features shown of {len(part)} (lineage members, the "
                f"{cfg.n_frequent} most frequent, the {cfg.n_labelled} most confidently labelled).</p>"
                + filters + note + "".join(blocks))
        atomic.write_text(out / "browser" / browser_name(step, sid),
                          page(f"{step_dir(step)} / {sid}: feature browser", body, "..", FILTER_JS))
    # every feature of every SAE: searchable index + examples shards (site/catalog.py)
    from llmjp_ckpt.site.catalog import copy_script, write_catalog

    copy_script(out / "assets")
    catalogs = {}
    for step, by_id in saes.items():
        for sid in by_id:
            part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
            catalogs[(step, sid)] = write_catalog(
                out, step, sid, part, stores.get((step, sid)), tt, cfg.n_examples, cfg.context,
                weights_hash(by_id[sid])).relative_to(out).as_posix()
    # lineages
    lin_links = []
    for i, lin in enumerate(lineages):
        cols = []
        for m in sorted(lin.members, key=lambda m: m.step):
            row = rows.get((m.step, m.sae_id, m.feature), {"feature": m.feature})
            link = links.get((m.step, m.sae_id, m.feature))
            block = feature_block(row, examples(m.step, m.sae_id, m.feature), cfg.context,
                                  f"../{link}" if link else None,
                                  f"{step_dir(m.step)} / {m.sae_id} / feature {m.feature}")
            cols.append(f'<div class="col">{block}</div>')
        name = f"lineage_{i}.html"  # numbered: family names are folder names, not URL-safe
        atomic.write_text(out / "lineages" / name,
                          page(f"lineage {lin.name}", f'<div class="row">{"".join(cols)}</div>', ".."))
        chain = " → ".join(f"{m.step}:{m.feature}" for m in sorted(lin.members, key=lambda m: m.step))
        lin_links.append({"href": f"lineages/{name}", "name": lin.name, "chain": chain})
    # index
    figs = _copy_inputs(run, out)
    metrics = load_metrics(saes)
    keys = _scalar_metrics(metrics)
    from llmjp_ckpt.site.index_page import SaeRow, write_index
    from llmjp_ckpt.site.render import number

    rows_t = []
    dead: dict[str, int] = {}
    for step in sorted(saes):
        for sid in saes[step]:
            alive = alive_mask(saes[step][sid])  # the one definition of dead (saes.dead)
            dead[f"{step_dir(step)}/{sid}"] = int((~alive).sum())
            vals = [number(metrics[(step, sid)].get(k)) for k in keys]
            rows_t.append(SaeRow(step_dir(step), sid, vals, f"{int(alive.sum())} / {alive.size}",
                                 f"browser/{browser_name(step, sid)}", catalogs.get((step, sid)),
                                 int(alive.size)))
    write_index(run, out, f"SAEs across checkpoints: {run.name}", figs, lin_links,
                ["checkpoint", "SAE", *keys, "live features", "features"], rows_t,
                _transitions_summary(run / "analysis" / "transitions.json"))
    return {"feature_pages": len(links), "browsers": len(selected), "lineages": len(lineages),
            "figures": len(figs), "dead_latents": dead}


def _make_readable(folder: Path) -> None:
    """Atomic writes create 0600 files in a 0700 folder; a site is meant to be read (served)."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def features_model_loader(rf: RunFolder, saes: dict[int, dict[str, Path]], device: str,
                          trust_pickle: bool = False, dtype: str = "float32") -> ModelLoader:
    """Load checkpoints as the features stage did (its recorded config), on ``device``."""
    from llmjp_ckpt.features.analyze import FeaturesConfig, default_model_loader

    recorded = (rf.stage_record("features") or {}).get("config") or {}
    known = {f.name for f in dataclasses.fields(FeaturesConfig)}
    fcfg = FeaturesConfig(**{k: v for k, v in recorded.items() if k in known})
    first = next(iter(next(iter(saes.values())).values()))
    fcfg = dataclasses.replace(fcfg, device=device, dtype=dtype,
                               trust_pickle=fcfg.trust_pickle or trust_pickle)
    return default_model_loader(rf.root, fcfg, first)


def last_model_cache(loader: ModelLoader) -> ModelLoader:
    """``loader`` that keeps the last checkpoint's model: a tokenizer fallback and the pages of
    that checkpoint's SAEs share one load, and only one model is held at a time."""
    last: dict[int, Any] = {}

    def load(step: int) -> Any:
        if step not in last:
            last.clear()  # drop the previous model before loading the next
            last[step] = loader(step)
        return last[step]

    return load


def build_site(run_dir: str | Path, cfg: SiteConfig | None = None, *,
               model_loader: ModelLoader | None = None, token_text: TokenText | None = None,
               force: bool = False) -> Path:
    """Build ``RUN/dashboards/`` (written whole, then swapped in); return its ``index.html``."""
    from llmjp_ckpt.features.analyze import discover_saes

    cfg = cfg or SiteConfig()
    from llmjp_ckpt.devices import check, without_runtime

    check(cfg.device, cfg.dtype)  # before anything is written
    rf = RunFolder(run_dir)
    run = rf.root
    index = run / SITE_DIR / "index.html"
    saes = discover_saes(run)
    # the SAEs' weight hashes: a retrained SAE (same id) rebuilds its pages
    record = {**without_runtime(dataclasses.asdict(cfg)), "inputs": inputs_fingerprint(run),
              "sae_weights_hashes": {f"{step_dir(st)}/{sid}": weights_hash(p)
                                     for st in sorted(saes) for sid, p in saes[st].items()}}
    df = load_features_table(run)
    lineages = load_lineages(run, cfg.max_lineages)
    with rf.stage(STAGE, record, force=force, outputs=[index], steps=sorted(saes)) as stage:
        if stage.skipped:
            return index
        if model_loader is None and (cfg.feature_pages or token_text is None):
            model_loader = features_model_loader(rf, saes, cfg.device, cfg.trust_pickle, cfg.dtype)
        if model_loader is not None:
            model_loader = last_model_cache(model_loader)
        try:
            tt = resolve_token_text(rf, token_text)
        except UserError:  # no usable data-stage tokenizer: the model's own
            tt = resolve_token_text(rf, None, model_loader(min(saes)) if model_loader else None)
        # Nothing below may open a RunFolder: opening one removes leftover .tmp-* folders,
        # and the site is being built in one.
        with atomic.atomic_dir(run / SITE_DIR) as tmp:
            info = _write_site(run, tmp, cfg, saes, df, lineages, tt, model_loader)
            _make_readable(tmp)
        stage.info.update(info)
    return index
