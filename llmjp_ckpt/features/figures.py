"""Write a plotly figure as self-contained HTML (plotly.js inline, offline) and, when a browser
is available to kaleido, as PNG; a missing browser is logged once, never an error."""

from __future__ import annotations

import logging
from pathlib import Path

from llmjp_ckpt import atomic

log = logging.getLogger(__name__)
_png_skipped = False


def save_figure(fig, html_path: str | Path, png: bool = True) -> list[Path]:
    """Write ``html_path`` (and ``.png`` beside it when kaleido can render); return what was written."""
    global _png_skipped
    html_path = Path(html_path)
    html = fig.to_html(include_plotlyjs=True, full_html=True)
    if "<meta charset" not in html[:500]:
        html = html.replace("<head>", '<head><meta charset="utf-8">', 1)
    written = [atomic.write_text(html_path, html)]
    if png and not _png_skipped:
        try:
            data = fig.to_image(format="png")
        except Exception as exc:  # noqa: BLE001  kaleido needs a Chrome; its errors vary by version
            _png_skipped = True
            log.warning("PNG figures skipped (kaleido could not render: %s)", str(exc).strip().splitlines()[0])
        else:
            written.append(atomic.write_bytes(html_path.with_suffix(".png"), data))
    return written
