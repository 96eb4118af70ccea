"""HTML fragments of the site; every corpus string goes through :mod:`llmjp_ckpt.site.escape`."""

from __future__ import annotations

import math
from typing import Any

from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.site.escape import text
from llmjp_ckpt.site.inputs import Example
from llmjp_ckpt.tokens import PARTIAL


def render_example(ex: Example, scale: float, context: int) -> str:
    """One window: tokens that fire as spans (background by activation, value in ``title``),
    the others as plain text; all text escaped."""
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
        if a == 0 and cls == "tok":  # most tokens: plain escaped text, no span (over half the
            parts.append(text(tok))  # bytes of a browser page; a zero has no colour or value)
            continue
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
    """A page in the site's one shell (``templates/shell.html``); ``body`` already escaped."""
    from llmjp_ckpt.site.templating import shell

    return shell(title, body, root, script)


def number(v: Any) -> str:
    """A metric as plain text (callers escape it: Jinja2, or :func:`fmt`)."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt(v: Any) -> str:
    """A metric as escaped HTML text."""
    return text(number(v))


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


def options(values: list[str]) -> str:
    return '<option value="">all</option>' + "".join(
        f'<option value="{text(v)}">{text(v)}</option>' for v in values)


def feature_block(row: dict[str, Any], examples: list[Example], context: int,
                  link: str | None, heading: str, lineage: str | None = None) -> str:
    scale = max((max(e.acts) for e in examples if e.acts), default=0.0)
    lang = row.get("language_script") or ""
    gran = row.get("granularity") or ""
    meta = (f'frequency {fmt(row.get("frequency"))} · max {fmt(row.get("max_activation"))} · '
            f'language {fmt(row.get("language_paper"))} (paper) / {fmt(row.get("language_script"))} '
            f'(script) · granularity {fmt(row.get("granularity"))} '
            f'({fmt(row.get("granularity_confidence"))})')
    dash = f' · <a href="{text(link)}">sae-dashboard page</a>' if link else ""
    dash += f' · <a href="{text(lineage)}">lineage</a>' if lineage else ""
    exs = "".join(render_example(e, scale, context) for e in examples) or "<p>no examples (dead latent)</p>"
    return (f'<div class="feat" data-lang="{text(lang)}" data-gran="{text(gran)}" '
            f'data-freq="{float(row.get("frequency") or 0.0)!r}">'
            f'<h3>{text(heading)}</h3><div class="meta">{meta}{dash}</div>{exs}</div>')


def flat_table(records: list[Any]) -> str:
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


def tables(obj: Any, path: str, depth: int = 0) -> list[str]:
    """Every list of flat records inside ``obj`` (nested dicts walked), as headed tables."""
    if isinstance(obj, list):
        t = flat_table(obj)
        return [f"<h3>{text(path)}</h3>{t}"] if t else []
    if isinstance(obj, dict) and depth < 4:
        return [h for k, v in obj.items() for h in tables(v, f"{path} / {k}" if path else str(k), depth + 1)]
    return []
