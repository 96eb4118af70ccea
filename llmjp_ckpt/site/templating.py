"""Jinja2 templates of the site: one page shell (``templates/shell.html``), autoescaping on.

Every value a template prints is escaped by Jinja2 unless it is :class:`markupsafe.Markup`:
only fragments built by :mod:`llmjp_ckpt.site.render` (which escapes corpus text through
:mod:`llmjp_ckpt.site.escape`) are passed as ``Markup``; data for scripts goes through
:func:`llmjp_ckpt.site.escape.json_for_script`.
"""

from __future__ import annotations

from functools import cache
from typing import Any

import jinja2
from markupsafe import Markup

CSS = """
body{font-family:system-ui,"Noto Sans CJK JP","Noto Sans JP",sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0}
th,td{border:1px solid #ccc;padding:.2em .5em;text-align:left}
th{background:#f3f3f3}.ex{font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.2em 0;
padding:.2em;border-bottom:1px dotted #ddd}.tok{border-radius:2px}
.partial{display:inline-block;width:.25em;height:1em}
.feat{border:1px solid #ddd;margin:.6em 0;padding:.4em .8em}.meta{color:#555;font-size:.9em}
.row{display:flex;gap:1em;overflow-x:auto}.col{min-width:22em;flex:1}
iframe{width:100%;height:560px;border:1px solid #ddd}.figs{columns:3}
.filters label{margin-right:1em}
.headline{display:flex;gap:1em;flex-wrap:wrap}.headline figure{flex:1;min-width:30em;margin:0}
.headline iframe{height:520px}.headline figcaption{font-weight:600;margin:.2em 0}
h1{margin:.2em 0 .4em}h2{margin:.8em 0 .3em}
#cat-results tr{cursor:pointer}#cat-results tr:hover{background:#fff4e6}
"""


@cache
def environment() -> jinja2.Environment:
    """The site's Jinja2 environment: packaged templates, autoescape for every template."""
    return jinja2.Environment(
        loader=jinja2.PackageLoader("llmjp_ckpt.site", "templates"),
        autoescape=True,  # every template, whatever its name: corpus text is data
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def render(template: str, **context: Any) -> str:
    """Render ``templates/<template>`` with the shell's defaults (``css``, ``root``)."""
    context.setdefault("root", ".")
    context.setdefault("css", Markup(CSS))
    context.setdefault("meta", {})
    context.setdefault("scripts", [])
    context.setdefault("inline_script", "")
    return environment().get_template(template).render(**context)


def shell(title: str, body: str, root: str = ".", script: str = "",
          meta: dict[str, str] | None = None) -> str:
    """A page from an already escaped ``body`` fragment (built by :mod:`.render`)."""
    return render("page.html", title=title, body=Markup(body), root=root,
                  inline_script=Markup(script), meta=meta or {})
