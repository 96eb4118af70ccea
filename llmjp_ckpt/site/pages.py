"""The cross-checkpoint site under ``RUN/dashboards/``, opening at ``index.html`` from ``file://``.

Pages (all static, all corpus text escaped through :mod:`llmjp_ckpt.site.escape`):

- ``index.html``: the checkpoints and their SAE metrics, the transition figures (copied from
  ``RUN/analysis/figures/``), the lineages, links to every browser page;
- ``browser/iter_XXXXXXX__<sae_id>.html``: a feature browser per checkpoint and SAE, like the
  study's demo: selected features with language, granularity, frequency, and their top
  examples with activation highlighting; filters run in a small inline script that only reads
  ``data-*`` attributes;
- ``lineages/lineage_<n>.html``: one feature's examples across checkpoints, side by side;
- ``features/iter_XXXXXXX/<sae_id>/feature_<N>.html``: sae-dashboard pages
  (:mod:`llmjp_ckpt.site.feature_pages`), scripts from ``assets/``.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, step_dir
from llmjp_ckpt.site.escape import attr, text
from llmjp_ckpt.tokens import PARTIAL, TokenText

log = logging.getLogger(__name__)
STAGE = "site"
SITE_DIR = "dashboards"
ModelLoader = Callable[[int], Any]  # step -> HookedTransformer


@dataclass(frozen=True)
class SiteConfig:
    """The site stage's settings (``configs/site.yaml``)."""

    n_frequent: int = 40  # most frequent live features per SAE shown in the browser
    n_labelled: int = 40  # most confidently labelled (non-"uninterpretable") features per SAE
    max_lineages: int = 50  # lineages given a page (longest first)
    n_examples: int = 5  # top examples shown per feature
    context: int = 12  # tokens kept each side of an example's strongest token
    feature_pages: bool = True  # render sae-dashboard pages (needs the model and d3)
    max_feature_pages: int = 20  # sae-dashboard pages per SAE (~0.4 MB each)
    dashboard_windows: int = 256  # test windows sae-dashboard computes its pages from
    device: str = "cpu"  # where the model runs for the sae-dashboard pages

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, int) and not isinstance(v, bool) and v < 0:
                raise UserError(f"site config: {f.name}={v}, expected >= 0")

    @classmethod
    def from_yaml(cls, path: str | Path) -> SiteConfig:
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise UserError(f"{path}: cannot read YAML ({exc.__class__.__name__})") from exc
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(raw) - known)
        if unknown:
            raise UserError(f"{path}: unknown field(s) {unknown}; expected some of {sorted(known)}")
        return cls(**raw)


@dataclass
class Member:
    """One feature of one SAE at one checkpoint."""

    step: int
    sae_id: str
    feature: int


@dataclass
class Lineage:
    name: str
    members: list[Member] = field(default_factory=list)


# --- reading the run ------------------------------------------------------------------------
def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path}: not readable UTF-8 JSON ({exc.__class__.__name__})") from exc


def load_metrics(saes: dict[int, dict[str, Path]]) -> dict[tuple[int, str], dict[str, Any]]:
    """``{(step, sae_id): metrics.json}`` (empty dict where an SAE has none)."""
    out = {}
    for step, by_id in saes.items():
        for sid, folder in by_id.items():
            p = folder / "metrics.json"
            out[(step, sid)] = read_json(p) if p.is_file() else {}
    return out


def load_features_table(run: Path) -> Any:
    """``RUN/analysis/features.parquet`` as a DataFrame."""
    import pandas as pd

    from llmjp_ckpt.features import COLUMNS

    path = run / "analysis" / "features.parquet"
    if not path.is_file():
        raise UserError(f"{path}: missing (run `llmjp-ckpt features --run {run}` first)")
    df = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: column(s) {missing} missing; expected {COLUMNS}")
    return df


def load_lineages(run: Path, max_lineages: int | None = None) -> list[Lineage]:
    """Lineages from the compare stage: ``RUN/analysis/lineages/<sae_id>.parquet``.

    Each file is a long table (``chain``, ``checkpoint``, ``feature``, ...): one row per chain
    member. The longest chains come first (ties: the smallest chain id), each SAE family in
    turn, at most ``max_lineages`` in all.
    """
    import pandas as pd

    per_family: list[list[Lineage]] = []
    for path in sorted((run / "analysis" / "lineages").glob("*.parquet")):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: unreadable parquet ({exc.__class__.__name__})") from exc
        missing = {"chain", "checkpoint", "feature"} - set(df.columns)
        if missing:
            raise UserError(f"{path}: column(s) {sorted(missing)} missing; expected chain, checkpoint, feature")
        sid = path.stem
        sizes = df.groupby("chain").size().reset_index(name="n")
        order = sizes.sort_values(["n", "chain"], ascending=[False, True])["chain"].tolist()
        groups = {int(c): g for c, g in df.groupby("chain")}
        per_family.append([
            Lineage(f"{sid} #{int(c)}", [Member(int(s), sid, int(f)) for s, f in
                                        zip(groups[int(c)]["checkpoint"], groups[int(c)]["feature"])])
            for c in order[: max_lineages if max_lineages is not None else len(order)]
        ])
    out: list[Lineage] = []
    for i in range(max((len(f) for f in per_family), default=0)):  # round-robin over families
        out += [f[i] for f in per_family if i < len(f)]
    return out[:max_lineages] if max_lineages is not None else out


def lineage_members(lineages: list[Lineage]) -> dict[tuple[int, str], set[int]]:
    out: dict[tuple[int, str], set[int]] = {}
    for lin in lineages:
        for m in lin.members:
            out.setdefault((m.step, m.sae_id), set()).add(m.feature)
    return out


def select_features(df: Any, cfg: SiteConfig, members: set[int] = frozenset()) -> list[int]:
    """Features shown for one SAE: lineage members, the most frequent, the labelled ones."""
    live = df[df["frequency"] > 0]
    chosen = sorted(members)
    chosen += live.sort_values(["frequency", "feature"], ascending=[False, True])["feature"].head(cfg.n_frequent).tolist()
    lab = live[live["granularity"].notna() & (live["granularity"] != "uninterpretable")]
    lab = lab.sort_values(["granularity_confidence", "feature"], ascending=[False, True])
    chosen += lab["feature"].head(cfg.n_labelled).tolist()
    seen: set[int] = set()
    return [int(f) for f in chosen if not (int(f) in seen or seen.add(int(f)))]


# --- examples -------------------------------------------------------------------------------
@dataclass
class Example:
    tokens: list[str]  # display text per token
    acts: list[float]


def store_examples(store: Any, feature: int, tt: TokenText, n: int) -> list[Example]:
    """The top ``n`` examples of a feature from a top-N store, as display text."""
    t, first = store.t, int(store.meta["first_position"])
    wins = t["top_windows"][feature].tolist()
    acts = t["top_token_acts"][feature].float()
    out = []
    for j, w in enumerate(wins[:n]):
        if w < 0:
            continue
        row = int((t["window_ids"] == w).nonzero()[0, 0])
        ids = t["window_tokens"][row].tolist()
        shown = tt.display(ids, hide_bos=True)[first:]
        out.append(Example(shown, acts[j].tolist()[: len(shown)]))
    return out


def render_example(ex: Example, scale: float, context: int) -> str:
    """One window as spans, background by activation; text escaped, values in ``title``."""
    if not ex.acts:
        return ""
    peak = max(range(len(ex.acts)), key=lambda i: ex.acts[i])
    lo, hi = max(0, peak - context), min(len(ex.tokens), peak + context + 1)
    parts = ['<div class="ex">', "&hellip;" if lo > 0 else ""]
    for i in range(lo, hi):
        a = float(ex.acts[i])
        tok = ex.tokens[i].replace("\n", "\u21b5")
        cls = "tok"
        if tok == PARTIAL:  # part of a character shown by a later token: a thin empty box
            tok, cls = "", "tok partial"
        style = ""
        if a > 0 and scale > 0:
            style = f' style="background:rgba(255,102,0,{min(1.0, a / scale):.3f})"'
        parts.append(f'<span class="{cls}"{style} title="{a:.3f}">{text(tok)}</span>')
    parts.append("&hellip;" if hi < len(ex.tokens) else "")
    parts.append("</div>")
    return "".join(parts)


# --- page shell -----------------------------------------------------------------------------
CSS = """
body{font-family:system-ui,"Noto Sans CJK JP","Noto Sans JP",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}
th{background:#f3f3f3}.ex{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.2em 0;
padding:.2em;border-bottom:1px dotted #ddd}.tok{border-radius:2px}.partial{display:inline-block;width:.25em;height:1em}
.feat{border:1px solid #ddd;margin:.6em 0;padding:.4em .8em}.meta{color:#555;font-size:.9em}
.row{display:flex;gap:1em;overflow-x:auto}.col{min-width:22em;flex:1}
iframe{width:100%;height:560px;border:1px solid #ddd}.figs{columns:3}.filters label{margin-right:1em}
"""


def page(title: str, body: str, root: str = ".", script: str = "") -> str:
    nav = f'<p><a href="{attr(root)}/index.html">index</a></p>' if root != "." else ""
    js = f"<script>{script}</script>\n" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{text(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n{nav}"
            f"<h1>{text(title)}</h1>\n{body}\n{js}</body>\n</html>\n")


def fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return text(v)


def browser_name(step: int, sae_id: str) -> str:
    return f"{step_dir(step)}__{sae_id}.html"


def feature_href(step: int, sae_id: str, feature: int) -> str:
    return f"features/{step_dir(step)}/{sae_id}/feature_{int(feature)}.html"


FILTER_JS = """
(function(){
  const sel = id => document.getElementById(id);
  function apply(){
    const lang = sel('f-lang').value, gran = sel('f-gran').value;
    const minf = parseFloat(sel('f-freq').value || '0');
    for (const el of document.querySelectorAll('.feat')) {
      const ok = (!lang || el.dataset.lang === lang) && (!gran || el.dataset.gran === gran)
        && parseFloat(el.dataset.freq) >= minf;
      el.style.display = ok ? '' : 'none';
    }
  }
  for (const id of ['f-lang','f-gran','f-freq']) sel(id).addEventListener('input', apply);
})();
"""


def _options(values: list[str]) -> str:
    return '<option value="">all</option>' + "".join(
        f'<option value="{attr(v)}">{text(v)}</option>' for v in values)


def feature_block(row: dict[str, Any], examples: list[Example], cfg: SiteConfig,
                  link: str | None, heading: str) -> str:
    scale = max((max(e.acts) for e in examples if e.acts), default=0.0)
    lang = row.get("language_script") or ""
    gran = row.get("granularity") or ""
    meta = (f'frequency {fmt(row.get("frequency"))} · max {fmt(row.get("max_activation"))} · '
            f'language {fmt(row.get("language_paper"))} (paper) / {fmt(row.get("language_script"))} '
            f'(script) · granularity {fmt(row.get("granularity"))} '
            f'({fmt(row.get("granularity_confidence"))})')
    dash = f' · <a href="{attr(link)}">sae-dashboard page</a>' if link else ""
    exs = "".join(render_example(e, scale, cfg.context) for e in examples) or "<p>no examples (dead latent)</p>"
    return (f'<div class="feat" data-lang="{attr(lang)}" data-gran="{attr(gran)}" '
            f'data-freq="{float(row.get("frequency") or 0.0)!r}">'
            f'<h3>{text(heading)}</h3><div class="meta">{meta}{dash}</div>{exs}</div>')


# --- building -------------------------------------------------------------------------------
def inputs_fingerprint(run: Path) -> dict[str, Any]:
    """Size and mtime of what the site reads, so a rerun notices new inputs."""
    out = {}
    pats = ["analysis/features.parquet", "analysis/transitions.json", "analysis/lineages/*.parquet",
            "analysis/figures/*", "features/iter_*/*/features.json", "saes/iter_*/*/metrics.json"]
    for pat in pats:
        for p in sorted(run.glob(pat)):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(run))] = [st.st_size, st.st_mtime_ns]
    return out


def resolve_token_text(rf: RunFolder, token_text: TokenText | None, model: Any = None) -> TokenText:
    """The run's tokenizer: given, else the data stage's ``tokenizer``, else the model's."""
    run = rf.root
    if token_text is not None:
        return token_text
    data = rf.stage("data") or {}
    tok = (data.get("config") or {}).get("tokenizer")
    if tok and Path(tok).exists():
        return TokenText.load(tok)
    if model is not None and getattr(model, "tokenizer", None) is not None:
        return TokenText.from_hf(model.tokenizer)
    raise UserError(f"{run / 'manifest.json'}: no tokenizer found (data stage config 'tokenizer'); "
                    "pass one with --tokenizer")


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


def _flat_table(records: list[Any]) -> str:
    recs = [r for r in records if isinstance(r, dict)]
    cols: list[str] = []
    for r in recs:
        for k, v in r.items():
            if isinstance(v, (int, float, str)) and k not in cols:
                cols.append(k)
    if not recs or not cols:
        return ""
    head = "".join(f"<th>{text(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(f"<td>{fmt(r.get(c))}</td>" for c in cols) + "</tr>" for r in recs)
    return f"<table><tr>{head}</tr>{body}</table>"


def _tables(obj: Any, path: str, depth: int = 0) -> list[str]:
    """Every list of flat records inside ``obj`` (nested dicts walked), as headed tables."""
    if isinstance(obj, list):
        t = _flat_table(obj)
        return [f"<h3>{text(path)}</h3>{t}"] if t else []
    if isinstance(obj, dict) and depth < 4:
        return [h for k, v in obj.items() for h in _tables(v, f"{path} / {k}" if path else str(k), depth + 1)]
    return []


def _transitions_summary(path: Path) -> str:
    if not path.is_file():
        return "<p>No transitions.json yet (run <code>llmjp-ckpt compare</code>).</p>"
    return "".join(_tables(read_json(path), "")) + '<p><a href="data/transitions.json">transitions.json</a></p>'


def _copy_inputs(run: Path, out: Path) -> list[Path]:
    """Copy the compare/feature figures and transitions.json into the site folder."""
    figs = []
    src = run / "analysis" / "figures"
    for p in sorted(src.glob("*")) if src.is_dir() else []:
        if p.is_file() and p.suffix in (".html", ".png", ".svg"):
            shutil.copyfile(p, out / "figures" / p.name)
            figs.append(out / "figures" / p.name)
    tj = run / "analysis" / "transitions.json"
    if tj.is_file():
        shutil.copyfile(tj, out / "data" / "transitions.json")
    return figs


def _render_feature_pages(run: Path, out: Path, saes: dict[int, dict[str, Path]],
                          selected: dict[tuple[int, str], list[int]], cfg: SiteConfig,
                          loader: ModelLoader | None, tt: TokenText) -> dict[tuple[int, str, int], str]:
    from tqdm.auto import tqdm

    from llmjp_ckpt.features.analyze import load_test_tokens
    from llmjp_ckpt.site import assets
    from llmjp_ckpt.site.feature_pages import write_feature_pages

    if assets.d3_js() is None:
        log.warning("site: d3 not found (%s or $%s; run `make setup`): sae-dashboard pages skipped",
                    assets.D3_VENDOR, assets.D3_ENV)
        return {}
    import torch
    from sae_lens import SAE

    import llmjp_ckpt  # noqa: F401  registers the token-norm SAE architecture before loading

    assets.copy_assets(out / "assets")
    if loader is None:
        raise ValueError("a model loader is needed for the sae-dashboard pages")
    tokens = load_test_tokens(run, cfg.dashboard_windows).to(cfg.device)
    links: dict[tuple[int, str, int], str] = {}
    for step in tqdm(sorted(saes), desc="site: sae-dashboard pages"):
        model = loader(step)
        for sid, folder in saes[step].items():
            feats = selected.get((step, sid), [])[: cfg.max_feature_pages]
            if not feats:
                continue
            sae = SAE.load_from_disk(str(folder), device=cfg.device).eval()
            with torch.no_grad():
                pages = write_feature_pages(
                    sae, model, tokens, feats, out / "features" / step_dir(step) / sid, tt,
                    "../../../assets", title=f"{step_dir(step)} / {sid}",
                    back_href=f"../../../{'browser/' + browser_name(step, sid)}")
            for f in pages:
                links[(step, sid, f)] = feature_href(step, sid, f)
        del model
    return links


def _write_site(run: Path, out: Path, cfg: SiteConfig, saes: dict[int, dict[str, Path]], df: Any,
                lineages: list[Lineage], tt: TokenText, loader: ModelLoader | None) -> dict[str, Any]:
    from llmjp_ckpt.features.store import FeatureStore, is_complete

    for sub in ("browser", "lineages", "figures", "data", "features", "assets"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = _rows(df)
    members = lineage_members(lineages)
    selected = {}
    for step, by_id in saes.items():
        for sid in by_id:
            part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
            selected[(step, sid)] = select_features(part, cfg, members.get((step, sid), set()))
    links = (_render_feature_pages(run, out, saes, selected, cfg, loader, tt)
             if cfg.feature_pages else {})
    stores = {}
    for step, by_id in saes.items():
        for sid in by_id:
            folder = run / "features" / step_dir(step) / sid
            stores[(step, sid)] = FeatureStore.load(folder) if is_complete(folder) else None

    def examples(step: int, sid: str, f: int) -> list[Example]:
        st = stores.get((step, sid))
        return store_examples(st, f, tt, cfg.n_examples) if st is not None and f < st.d_sae else []

    # feature browsers
    for (step, sid), feats in selected.items():
        part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
        langs = sorted({str(v) for v in part["language_script"].dropna()})
        grans = sorted({str(v) for v in part["granularity"].dropna()})
        filters = (f'<div class="filters"><label>language <select id="f-lang">{_options(langs)}</select></label>'
                   f'<label>granularity <select id="f-gran">{_options(grans)}</select></label>'
                   '<label>min frequency <input id="f-freq" type="number" step="0.0001" value="0"></label></div>')
        note = "" if stores.get((step, sid)) else "<p>No top-N store for this SAE (run <code>llmjp-ckpt features</code>).</p>"
        blocks = []
        for f in feats:
            row = rows.get((step, sid, f), {"feature": f})
            link = links.get((step, sid, f))
            blocks.append(feature_block(row, examples(step, sid, f), cfg,
                                        f"../{link}" if link else None, f"feature {f}"))
        body = (f"<p>{len(feats)} features shown of {len(part)} (lineage members, the "
                f"{cfg.n_frequent} most frequent, the {cfg.n_labelled} most confidently labelled).</p>"
                + filters + note + "".join(blocks))
        atomic.write_text(out / "browser" / browser_name(step, sid),
                          page(f"{step_dir(step)} / {sid}: feature browser", body, "..", FILTER_JS))
    # lineages
    lin_links = []
    for i, lin in enumerate(lineages):
        cols = []
        for m in sorted(lin.members, key=lambda m: m.step):
            row = rows.get((m.step, m.sae_id, m.feature), {"feature": m.feature})
            link = links.get((m.step, m.sae_id, m.feature))
            block = feature_block(row, examples(m.step, m.sae_id, m.feature), cfg,
                                  f"../{link}" if link else None,
                                  f"{step_dir(m.step)} / {m.sae_id} / feature {m.feature}")
            cols.append(f'<div class="col">{block}</div>')
        name = f"lineage_{i}.html"  # numbered: family names are folder names, not URL-safe
        atomic.write_text(out / "lineages" / name,
                          page(f"lineage {lin.name}", f'<div class="row">{"".join(cols)}</div>', ".."))
        chain = " → ".join(f"{m.step}:{m.feature}" for m in sorted(lin.members, key=lambda m: m.step))
        lin_links.append(f'<li><a href="lineages/{attr(name)}">lineage {text(lin.name)}</a> '
                         f'<span class="meta">{text(chain)}</span></li>')
    # index
    figs = _copy_inputs(run, out)
    metrics = load_metrics(saes)
    keys = _scalar_metrics(metrics)
    head = "".join(f"<th>{text(k)}</th>" for k in ["checkpoint", "SAE", *keys, "live features", "browser"])
    trs = []
    for step in sorted(saes):
        for sid in saes[step]:
            part = df[(df["checkpoint"] == step) & (df["sae_id"] == sid)]
            live = int((part["frequency"] > 0).sum())
            cells = [text(step_dir(step)), text(sid), *(fmt(metrics[(step, sid)].get(k)) for k in keys),
                     f"{live} / {len(part)}",
                     f'<a href="browser/{attr(browser_name(step, sid))}">features</a>']
            trs.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    # One frame for all figures: each figure page carries its own plotly.js (~4.6 MB), so the
    # index loads one at a time; the links switch the frame.
    html_figs = [p for p in figs if p.suffix == ".html"]
    fig_html = "<p>No figures yet.</p>"
    if html_figs:
        items = "".join(f'<li><a href="figures/{attr(p.name)}" target="figure">{text(p.stem)}</a></li>'
                        for p in html_figs)
        fig_html = (f'<ul class="figs">{items}</ul><iframe name="figure" src="figures/{attr(html_figs[0].name)}" '
                    f'title="figure"></iframe>')
    body = (f"<h2>Checkpoints and SAEs</h2><table><tr>{head}</tr>{''.join(trs)}</table>"
            f"<h2>Transitions</h2>{_transitions_summary(run / 'analysis' / 'transitions.json')}"
            f"<h2>Figures</h2>{fig_html}"
            f"<h2>Lineages</h2>{'<ul>' + ''.join(lin_links) + '</ul>' if lin_links else '<p>No lineages yet.</p>'}")
    atomic.write_text(out / "index.html", page(f"SAEs across checkpoints: {run.name}", body))
    return {"feature_pages": len(links), "browsers": len(selected), "lineages": len(lineages),
            "figures": len(figs)}


def _make_readable(folder: Path) -> None:
    """Atomic writes create 0600 files in a 0700 folder; a site is meant to be read (served)."""
    folder.chmod(0o755)
    for p in folder.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def features_model_loader(rf: RunFolder, saes: dict[int, dict[str, Path]], device: str) -> ModelLoader:
    """Load checkpoints as the features stage did (its recorded config), on ``device``."""
    from llmjp_ckpt.features.analyze import FeaturesConfig, default_model_loader

    recorded = (rf.stage("features") or {}).get("config") or {}
    known = {f.name for f in dataclasses.fields(FeaturesConfig)}
    fcfg = FeaturesConfig(**{k: v for k, v in recorded.items() if k in known})
    first = next(iter(next(iter(saes.values())).values()))
    return default_model_loader(rf.root, dataclasses.replace(fcfg, device=device), first)


def build_site(run_dir: str | Path, cfg: SiteConfig | None = None, *,
               model_loader: ModelLoader | None = None, token_text: TokenText | None = None,
               force: bool = False) -> Path:
    """Build ``RUN/dashboards/`` (written whole, then swapped in); return its ``index.html``."""
    from llmjp_ckpt.features.analyze import discover_saes

    cfg = cfg or SiteConfig()
    rf = RunFolder(run_dir)
    run = rf.root
    index = run / SITE_DIR / "index.html"
    record = {**dataclasses.asdict(cfg), "inputs": inputs_fingerprint(run)}
    if not force and rf.is_done(STAGE, record) and index.is_file():
        log.info("site: already built for these inputs, skipped")
        return index
    saes = discover_saes(run)
    df = load_features_table(run)
    lineages = load_lineages(run, cfg.max_lineages)
    rf.record(STAGE, record, "running")
    try:
        model = None
        if token_text is None and rf.stage("data") is None and model_loader is not None:
            model = model_loader(min(saes))
        tt = resolve_token_text(rf, token_text, model)
        del model
        if cfg.feature_pages and model_loader is None:
            model_loader = features_model_loader(rf, saes, cfg.device)
        # Nothing below may open a RunFolder: opening one removes leftover .tmp-* folders,
        # and the site is being built in one.
        with atomic.atomic_dir(run / SITE_DIR) as tmp:
            info = _write_site(run, tmp, cfg, saes, df, lineages, tt, model_loader)
            _make_readable(tmp)
    except BaseException:
        rf.record(STAGE, record, "failed")
        raise
    rf.record(STAGE, record, "done", steps=sorted(saes), **info)
    return index
