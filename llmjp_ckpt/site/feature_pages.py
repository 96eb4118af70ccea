"""sae-dashboard feature pages that work offline and show SentencePiece text properly.

sae-dashboard 0.8 computes the data well but its pages (``save_feature_centric_vis``) load d3
and plotly from CDNs, have no charset, embed their JSON with ``json.dumps`` (a ``</script>`` in
a token would end the script) and insert token text into tooltips as HTML. Its token strings
come from a per-id ``decode_fn`` built on a GPT-2 reverse-vocabulary table. So we keep its
runner and its per-feature HTML data (:meth:`FeatureData._get_html_data_feature_centric`, which
takes ``decode_fn`` as an argument: our seam) and replace the saving step:

- ``decode_fn`` names single ids through :class:`llmjp_ckpt.tokens.TokenText` (logit tables);
- the example sequences' ``tok`` strings are recomputed per window with
  :meth:`TokenText.display` (``decode_fn`` sees one id at a time, so it cannot merge
  byte-fallback pieces back into characters);
- the written page gets ``<meta charset="utf-8">``, is written as UTF-8, loads d3/plotly from
  ``assets/`` beside it, embeds its JSON escaped for ``<script>``, and escapes token text in
  the tooltips that sae-dashboard builds as HTML.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.site import escape
from llmjp_ckpt.site.assets import D3_NAME, PLOTLY_NAME
from llmjp_ckpt.tokens import TokenText

log = logging.getLogger(__name__)
HASH_META = "llmjp-sae-weights-hash"

_CDN_D3 = '<script src="https://d3js.org/d3.v6.min.js"></script>'
_CDN_PLOTLY = '<script src="https://cdn.plot.ly/plotly-latest.min.js"></script>'
# sae-dashboard's tokenScript.js interpolates token text into HTML strings (tooltip rows passed
# to d3's .html()) and into plotly annotation text; these are the exact spots we escape.
_JS_SINKS = {
    "<code>${tok}</code>": "<code>${llmjpEscapeHtml(tok)}</code>",
    "`|${tok}|<br>": "`|${llmjpEscapeHtml(tok)}|<br>",
}
_JS_ESCAPE_FN = """
function llmjpEscapeHtml(s) {
    return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;")
        .replace(/"/g, "&quot;").replace(/'/g, "&#39;");
}
"""


def single_token_text(tt: TokenText, token_id: int) -> str:
    """One id alone (logit tables): ``▁`` as a space, a lone byte as ``\\xNN``, any tokenizer."""
    return tt.single_text(token_id)


def make_decode_fn(tt: TokenText):
    """A ``decode_fn`` with sae-dashboard's signature (an id or a list of ids)."""

    def decode(token_id: Any) -> Any:
        if isinstance(token_id, int):
            return single_token_text(tt, token_id)
        if isinstance(token_id, torch.Tensor):
            token_id = token_id.tolist()
        return [decode(int(t)) for t in token_id]

    return decode


def redecode_sequences(js_data: Any, tt: TokenText) -> int:
    """Replace each example sequence's ``tok`` strings by :meth:`TokenText.display` of its ids,
    in place; return how many sequences were rewritten."""
    n = 0
    if isinstance(js_data, dict):
        for v in js_data.values():
            n += redecode_sequences(v, tt)
    elif isinstance(js_data, list) and js_data and isinstance(js_data[0], (dict, list)):
        if all(isinstance(t, dict) and "tokID" in t and "tok" in t for t in js_data):
            shown = tt.display([int(t["tokID"]) for t in js_data], hide_bos=True)
            for t, s in zip(js_data, shown):
                t["tok"] = s.replace("\n", "\u21b5")
            return 1
        for v in js_data:
            n += redecode_sequences(v, tt)
    return n


def dedupe_ticks(js_data: dict[str, Any]) -> int:
    """Drop repeated histogram tick values in place; return how many were dropped.

    sae-dashboard's "5 ticks" mode steps by ``0.1 * int(range / 0.3)``: for a range under 0.3
    (small logit effects, as in the toy) the step is 1e-6, so a page carried ~70,000 ticks all
    rounded to -0.1 / 0 / 0.1 (60 % of a 0.7 MB page). Plotly draws repeated tick values once,
    so the page looks the same.
    """
    dropped = 0
    for key in ("actsHistogramData", "logitsHistogramData"):
        for hist in (js_data.get(key) or {}).values():
            ticks = hist.get("ticks")
            if isinstance(ticks, list):
                unique = list(dict.fromkeys(ticks))
                dropped += len(ticks) - len(unique)
                hist["ticks"] = unique
    return dropped


def finalize_page(page: str, js_data: dict[str, Any], title: str, assets_href: str,
                  back_href: str | None = None, sae_weights_hash: str | None = None) -> str:
    """Turn sae-dashboard's HTML fragment into a standalone, offline, escaped UTF-8 page.

    ``sae_weights_hash`` (:func:`llmjp_ckpt.saes.dead.weights_hash`) is recorded in a
    ``<meta name="llmjp-sae-weights-hash">`` tag: the SAE the page was computed from.
    """
    raw_json = json.dumps(js_data)  # exactly what HTML.get_html embeds
    checks = {"d3 CDN tag": _CDN_D3, "plotly CDN tag": _CDN_PLOTLY, "embedded data": raw_json}
    missing = [name for name, s in checks.items() if s not in page]
    if missing:  # sae-dashboard changed its template: refuse rather than write an unsafe page
        raise RuntimeError(f"sae-dashboard page template changed; not found: {missing}")
    safe_json = escape.json_for_script(js_data)
    page = page.replace(raw_json, safe_json, 1)
    for old, new in _JS_SINKS.items():
        page = page.replace(old, new)
    if "${tok}" in page.replace(safe_json, ""):  # a token interpolated somewhere we do not escape: refuse
        raise RuntimeError("sae-dashboard page template changed: unescaped ${tok} left in its scripts")
    page = page.replace(_CDN_D3, f'<script src="{escape.text(assets_href)}/{D3_NAME}"></script>')
    page = page.replace(_CDN_PLOTLY, f'<script src="{escape.text(assets_href)}/{PLOTLY_NAME}"></script>')
    page = page.replace("function setupPage(", _JS_ESCAPE_FN + "\nfunction setupPage(", 1)
    back = f'<p><a href="{escape.text(back_href)}">&larr; site index</a></p>\n' if back_href else ""
    meta = (f'<meta name="{HASH_META}" content="{escape.text(sae_weights_hash)}">\n'
            if sae_weights_hash else "")
    return ("<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"{meta}<title>{escape.text(title)}</title>\n</head>\n<body>\n{back}"
            f"<h2>{escape.text(title)}</h2>\n{page}\n</body>\n</html>\n")


def _fold_free(sae: Any) -> Any:
    """A copy of the SAE for sae-dashboard, which calls ``fold_W_dec_norm()`` on what it gets.

    SAELens refuses to fold a TopK SAE without ``rescale_acts_by_decoder_norm`` (folding would
    change which latents win the top-k), so the copy skips the fold and the pages show the
    SAE's own activations — the same ones as our top-N store. The caller's SAE is untouched.
    """
    sae = copy.deepcopy(sae)
    if not getattr(sae.cfg, "rescale_acts_by_decoder_norm", True):
        sae.fold_W_dec_norm = lambda: None  # instance attribute: only this copy
    return sae


def feature_centric_layout() -> Any:
    """sae-dashboard's default feature-centric layout, but its sequences may centre on any token.

    Its default ``buffer=(5, 5)`` never picks a token in the first 6 or last 5 positions of a
    window as a top activation, so a page's top example could differ from the top-N store's;
    ``buffer=None`` searches (and shows) whole windows, as the store does.
    """
    from sae_dashboard.components_config import (
        ActsHistogramConfig,
        FeatureTablesConfig,
        LogitsHistogramConfig,
        LogitsTableConfig,
        SequencesConfig,
    )
    from sae_dashboard.layout import Column, SaeVisLayoutConfig

    return SaeVisLayoutConfig(
        columns=[Column(FeatureTablesConfig()),
                 Column(ActsHistogramConfig(), LogitsTableConfig(), LogitsHistogramConfig()),
                 Column(SequencesConfig(stack_mode="stack-none", buffer=None))],
        height=750)


@contextlib.contextmanager
def _stable_top_activations() -> Iterator[None]:
    """Within the block, sae-dashboard breaks ties among top activations like the top-N store.

    sae-dashboard picks a page's top sequences with ``torch.topk``, whose order among equal
    values is unspecified; equal maxima are common in real text (windows that share their
    prefix up to the top token). The store keeps the earliest window on ties, so a stable sort
    over windows given in id order picks the same window. Seam: sae-dashboard looks the
    function up as a global of ``sequence_data_generator``; restored on exit.
    """
    from sae_dashboard import sequence_data_generator as sdg

    original = sdg.k_largest_indices

    def stable(x: torch.Tensor, k: int, largest: bool = True,
               buffer: tuple[int, int] | None = (5, -5)) -> torch.Tensor:
        lo, hi = buffer if buffer is not None else (0, x.size(1))
        x = x[:, lo:hi]
        idx = torch.sort(x.flatten(), descending=largest, stable=True).indices[:k]
        return torch.stack((idx // x.size(1), idx % x.size(1) + lo), dim=1)

    sdg.k_largest_indices = stable
    try:
        yield
    finally:
        sdg.k_largest_indices = original


def write_feature_pages(sae: Any, model: Any, tokens: torch.Tensor, features: Iterable[int],
                        out_dir: str | Path, tt: TokenText, assets_href: str, *,
                        title: str = "", back_href: str | None = None,
                        minibatch_tokens: int = 64,
                        sae_weights_hash: str | None = None) -> dict[int, Path]:
    """Render one page per feature in ``out_dir`` (``feature_<N>.html``); return them.

    The top examples are the highest activations over ``tokens``: the site passes the top-N
    store's windows (with some more test windows), so each page's top example is the store's.
    """
    from sae_dashboard.html_fns import HTML
    from sae_dashboard.sae_vis_data import SaeVisConfig
    from sae_dashboard.sae_vis_runner import SaeVisRunner

    feats = sorted({int(f) for f in features})
    if not feats:
        return {}
    d_sae = int(sae.cfg.d_sae)
    bad = [f for f in feats if not 0 <= f < d_sae]
    if bad:
        raise UserError(f"features {bad[:5]}: expected 0 <= feature < d_sae={d_sae}")
    hook = getattr(sae.cfg.metadata, "hook_name", None)
    if not hook:
        raise UserError("SAE cfg.json metadata.hook_name missing: needed for sae-dashboard pages")
    cfg = SaeVisConfig(
        hook_point=hook, features=feats, minibatch_size_tokens=minibatch_tokens,
        minibatch_size_features=min(256, len(feats)), device=str(tokens.device),
        ignore_tokens={tt.bos_id} if tt.bos_id is not None else set(), verbose=False,
        feature_centric_layout=feature_centric_layout(),
    )
    with _stable_top_activations():
        data = SaeVisRunner(cfg).run(encoder=_fold_free(sae), model=model, tokens=tokens)
    decode_fn = make_decode_fn(tt)
    layout = cfg.feature_centric_layout
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[int, Path] = {}
    with tempfile.TemporaryDirectory(prefix=".tmp-saevis-", dir=out_dir) as tmp:
        for feat in feats:
            fd = data.feature_data_dict[feat]
            html_obj = fd._get_html_data_feature_centric(layout, decode_fn)
            redecode_sequences(html_obj.js_data, tt)
            dedupe_ticks(html_obj.js_data)
            page_obj = HTML(html_data=html_obj.html_data, js_data={  # fresh per feature: no copies
                "AGGDATA": data.feature_stats.aggdata,
                "DASHBOARD_DATA": {str(feat): html_obj.js_data},
            })
            scratch = Path(tmp) / f"feature_{feat}.html"
            page_obj.get_html(layout_columns=layout.columns, layout_height=layout.height,
                              filename=scratch, first_key=str(feat))
            # sae-dashboard writes with the locale's encoding; its template and its
            # json.dumps (ASCII-escaped) output are ASCII, so reading back as UTF-8 is exact.
            frag = scratch.read_bytes().decode("utf-8")
            page = finalize_page(frag, page_obj.js_data, f"{title} feature {feat}".strip(),
                                 assets_href, back_href, sae_weights_hash)
            written[feat] = atomic.write_text(out_dir / f"feature_{feat}.html", page)
    return written


def page_data(page: str) -> dict[str, Any]:
    """The data a written page embeds (sae-dashboard's ``defineData()`` return value)."""
    at = page.find("function defineData()")
    at = page.find("return ", at) if at >= 0 else -1
    if at < 0:
        raise UserError("not a sae-dashboard feature page: no defineData() found")
    data, _ = json.JSONDecoder().raw_decode(page, at + len("return "))
    return data


def page_top_example(page: str) -> tuple[list[int], list[float]]:
    """The token ids and activations of a written page's first top-activation sequence
    (sae-dashboard leaves out position 0, the BOS; a token that does not fire reads 0)."""
    data = page_data(page)
    (feature_data,) = data["DASHBOARD_DATA"].values()
    groups = [g for g in feature_data["tokenData"].values()
              if str(g.get("title", "")).startswith("TOP ACTIVATIONS")]
    if not groups or not groups[0]["data"]:
        return [], []
    seq = groups[0]["data"][0]
    return [int(t["tokID"]) for t in seq], [float(t.get("featAct", 0.0)) for t in seq]


def page_name(feature: int) -> str:
    return f"feature_{int(feature)}.html"


_PAGE = re.compile(r"^feature_(\d+)\.html$")


def existing_pages(folder: str | Path) -> dict[int, Path]:
    """``{feature: path}`` of the pages already in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        return {}
    out = {}
    for p in folder.iterdir():
        m = _PAGE.match(p.name)
        if m:
            out[int(m.group(1))] = p
    return out
