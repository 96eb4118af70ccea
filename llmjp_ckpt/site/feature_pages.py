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

import copy
import json
import logging
import re
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.site import escape
from llmjp_ckpt.site.assets import D3_NAME, PLOTLY_NAME
from llmjp_ckpt.tokens import TokenText, byte_of_piece

log = logging.getLogger(__name__)

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
    """One id alone (logit tables): ``▁`` as a space, a lone byte piece as ``\\xNN``."""
    piece = tt.piece(token_id)
    b = byte_of_piece(piece)
    if b is not None:
        return f"\\x{b:02X}"
    return tt.piece_text(token_id)


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


def finalize_page(page: str, js_data: dict[str, Any], title: str, assets_href: str,
                  back_href: str | None = None) -> str:
    """Turn sae-dashboard's HTML fragment into a standalone, offline, escaped UTF-8 page."""
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
    page = page.replace(_CDN_D3, f'<script src="{escape.attr(assets_href)}/{D3_NAME}"></script>')
    page = page.replace(_CDN_PLOTLY, f'<script src="{escape.attr(assets_href)}/{PLOTLY_NAME}"></script>')
    page = page.replace("function setupPage(", _JS_ESCAPE_FN + "\nfunction setupPage(", 1)
    back = f'<p><a href="{escape.attr(back_href)}">&larr; site index</a></p>\n' if back_href else ""
    return ("<!DOCTYPE html>\n<html lang=\"ja\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{escape.text(title)}</title>\n</head>\n<body>\n{back}"
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


def write_feature_pages(sae: Any, model: Any, tokens: torch.Tensor, features: Iterable[int],
                        out_dir: str | Path, tt: TokenText, assets_href: str, *,
                        title: str = "", back_href: str | None = None,
                        minibatch_tokens: int = 64) -> dict[int, Path]:
    """Render one page per feature in ``out_dir`` (``feature_<N>.html``); return them."""
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
    )
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
                                 assets_href, back_href)
            written[feat] = atomic.write_text(out_dir / f"feature_{feat}.html", page)
    return written


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
