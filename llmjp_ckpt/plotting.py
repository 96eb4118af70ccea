"""Write plotly figures for every stage: self-contained HTML and, when possible, PNG.

HTML carries plotly.js inline, so it opens offline from ``file://``. PNGs are rendered by kaleido
in one browser session for all of a stage's figures; when no browser is found the export is
logged once and skipped, never fatal.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

import plotly.graph_objects as go

from llmjp_ckpt import atomic

log = logging.getLogger(__name__)


def write_figures(figures: dict[str, go.Figure], out_dir: Path, png: bool = True) -> dict[str, list[str]]:
    """Write ``name.html`` for every figure and, if a browser is found, ``name.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    for name, fig in figures.items():
        path = out_dir / f"{name}.html"
        atomic.write_text(path, fig.to_html(include_plotlyjs=True, full_html=True))
        written[name] = [str(path)]
    if not png or not figures:
        return written
    tmp = Path(tempfile.mkdtemp(prefix=atomic.TMP_PREFIX + "png.", dir=out_dir))
    # kaleido's browser driver logs every tab at INFO; keep a pipeline's INFO log readable
    quiet = {n: logging.getLogger(n).level for n in ("kaleido", "choreographer", "logistro")}
    for n in quiet:
        logging.getLogger(n).setLevel(logging.WARNING)
    try:
        import plotly.io as pio

        names = list(figures)
        # one browser session for all images (plotly's batch API for kaleido ≥ 1)
        pio.write_images([figures[n] for n in names], [tmp / f"{n}.png" for n in names],
                         width=[figures[n].layout.width or 900 for n in names],
                         height=[figures[n].layout.height or 500 for n in names])
        for n in names:
            os.replace(tmp / f"{n}.png", out_dir / f"{n}.png")
            written[n].append(str(out_dir / f"{n}.png"))
    except Exception as exc:  # noqa: BLE001 - a PNG is never worth failing the stage
        log.warning("PNG export skipped (%s: %s); the HTML figures are written",
                    type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for n, level in quiet.items():
            logging.getLogger(n).setLevel(level)
    return written
