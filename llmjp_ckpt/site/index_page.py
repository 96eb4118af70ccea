"""The site's ``index.html``: the study's two findings first, then lineages / crosscoder, the
other figures, then the tables; and the figures, relinked to the one ``assets/plotly.min.js``.

Figures are written by :func:`llmjp_ckpt.plotting.write_figures` with a relative
``<script src="plotly.min.js">``; copied into ``dashboards/figures/`` that tag points at
``../assets/plotly.min.js``, so the whole site carries plotly.js once and opens from ``file://``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from markupsafe import Markup

from llmjp_ckpt import atomic, plotting
from llmjp_ckpt.config import read_json
from llmjp_ckpt.site.crosscoder import labels_context as crosscoder_labels
from llmjp_ckpt.site.peers import peer_context
from llmjp_ckpt.site.planted import FILE as PLANTED_FILE
from llmjp_ckpt.site.planted import planted_context
from llmjp_ckpt.site.templating import render

ASSETS_FROM_FIGURES = "../assets/" + plotting.PLOTLY_JS
LANGUAGE_FIGURES = ("features_language_script", "features_language_paper")  # preferred first
GRANULARITY_FIGURE = "features_granularity"


@dataclass
class SaeRow:
    """One row of the checkpoints-and-SAEs table."""

    step: str
    sae_id: str
    values: list[str]
    live: str
    browser: str
    catalog: str | None
    n_features: int


def _link_or_copy(src: Path, dst: Path) -> Path:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)
    return dst


def copy_figures(run: Path, out: Path) -> list[Path]:
    """The figures of ``RUN/analysis/figures/`` into ``out/figures/``, plotly.js from assets."""
    src = run / "analysis" / "figures"
    (out / "figures").mkdir(parents=True, exist_ok=True)
    figs: list[Path] = []
    shared = False
    for p in sorted(src.glob("*")) if src.is_dir() else []:
        if not p.is_file() or p.suffix not in (".html", ".png", ".svg"):
            continue
        dst = out / "figures" / p.name
        if p.suffix == ".html":
            html = p.read_text(encoding="utf-8")
            if plotting.PLOTLY_SRC in html:
                shared = True
                html = html.replace(plotting.PLOTLY_SRC, plotting.PLOTLY_SRC.replace(
                    f'src="{plotting.PLOTLY_JS}"', f'src="{ASSETS_FROM_FIGURES}"'), 1)
                atomic.write_text(dst, html)
                figs.append(dst)
                continue
        figs.append(_link_or_copy(p, dst))  # a PNG, or an older figure with plotly.js inline
    if shared:  # one copy on disk: a hard link to the figures' own where the filesystem allows
        (out / "assets").mkdir(parents=True, exist_ok=True)
        own, dst = src / plotting.PLOTLY_JS, out / "assets" / plotting.PLOTLY_JS
        if own.is_file():
            tmp = dst.with_name(atomic.TMP_PREFIX + "link." + plotting.PLOTLY_JS)
            try:
                os.link(own, tmp)
                os.replace(tmp, dst)
            except OSError:
                tmp.unlink(missing_ok=True)
        plotting.ensure_plotly_js(out / "assets")  # rewritten only if it is not plotly's own
    return figs


def headline(figs: list[Path], language_column: str | None = None) -> list[dict[str, Any]]:
    """The language-share and granularity-share figures over checkpoints (those that exist)."""
    by_stem = {p.stem: p for p in figs if p.suffix == ".html"}
    pngs = {p.stem for p in figs if p.suffix == ".png"}
    lang_order = list(LANGUAGE_FIGURES)
    if language_column and f"features_{language_column}" in lang_order:
        lang_order.remove(f"features_{language_column}")
        lang_order.insert(0, f"features_{language_column}")
    out = []
    lang = next((n for n in lang_order if n in by_stem), None)
    captions = {lang: "Language of the live features (ja / en / mixed) per checkpoint",
                GRANULARITY_FIGURE: "Granularity of the live features per checkpoint"}
    for name in (lang, GRANULARITY_FIGURE):
        if name in by_stem:
            out.append({"name": name, "href": f"figures/{by_stem[name].name}",
                        "caption": captions[name],
                        "png": f"figures/{name}.png" if name in pngs else None})
    return out


def write_index(run: Path, out: Path, title: str, figs: list[Path],
                lineages: list[dict[str, str]], metric_head: list[str], sae_rows: list[SaeRow],
                transitions: str) -> Path:
    """Write ``out/index.html``; ``transitions`` is an escaped fragment (:mod:`.render`)."""
    tj = run / "analysis" / "transitions.json"
    lang_col = read_json(tj).get("language_column") if tj.is_file() else None
    heads = headline(figs, lang_col if isinstance(lang_col, str) else None)
    shown = {h["name"] for h in heads}
    html_figs = [p for p in figs if p.suffix == ".html"]
    cross = [p for p in html_figs if p.stem.startswith("crosscoder")]
    cc_json = run / "analysis" / "crosscoder.json"
    if cc_json.is_file():
        shutil.copyfile(cc_json, out / "data" / "crosscoder.json")
    crosscoder = {"figures": [{"name": p.stem, "href": f"figures/{p.name}"} for p in cross],
                  "json": "data/crosscoder.json" if cc_json.is_file() else None,
                  "labels": crosscoder_labels(cc_json)}  # latent labels per checkpoint, if any
    others = [{"name": p.stem, "href": f"figures/{p.name}"} for p in html_figs
              if p.stem not in shown]
    planted = planted_context(run, figs)  # the toy world's planted truth vs recovered, if scored
    if planted:
        shutil.copyfile(run / "analysis" / PLANTED_FILE, out / planted["json"])
    page = render("index.html", title=title, headline=heads, crosscoder=crosscoder, planted=planted,
                  peers=peer_context(run, figs),
                  lineages=lineages, figures=others, metric_head=metric_head,
                  sae_rows=sae_rows, transitions=Markup(transitions))
    path = out / "index.html"
    atomic.write_text(path, page)
    return path
