"""Escaping corpus text for every place it can land in a page.

Corpus text (token strings, document text) is data, never markup: it goes through one of these
functions wherever it is written — HTML text and attribute values (:func:`text`), JSON inside
``<script>``, or a JavaScript string literal. There is no templating engine that could skip a call.
"""

from __future__ import annotations

import html
import json
from typing import Any

# Inside <script>, the HTML parser ends the element at "</script" and treats "<!--" specially;
# U+2028/2029 end a line in older JavaScript. Escaping <, >, & and both separators as \uXXXX keeps
# the JSON a valid JavaScript literal that no parser can leave early.
_SCRIPT_UNSAFE = {
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def text(value: Any) -> str:
    """Escape for HTML text content and for a double- or single-quoted attribute value."""
    return html.escape(str(value), quote=True)


def json_for_script(obj: Any) -> str:
    """``obj`` as JSON that is safe inside an HTML ``<script>`` element."""
    out = json.dumps(obj, ensure_ascii=False, allow_nan=False, separators=(",", ":"))  # compact: pages are mostly data
    for ch, rep in _SCRIPT_UNSAFE.items():
        out = out.replace(ch, rep)
    return out


def js_string(value: Any) -> str:
    """A JavaScript string literal (with quotes) safe inside ``<script>`` and in attributes
    once passed through :func:`attr`."""
    return json_for_script(str(value))
