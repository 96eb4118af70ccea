"""Write plotly figures for every stage: HTML that opens offline and, when possible, PNG.

Every figure folder holds one ``plotly.min.js`` (copied from the installed plotly package) that
its HTML figures load with a relative ``<script src>`` (plotly's ``include_plotlyjs="directory"``),
so a figure opens offline from ``file://`` without carrying its own 4.6 MB copy; the site points
the same tag at its single ``assets/plotly.min.js`` (:data:`PLOTLY_SRC`). PNGs are rendered by
kaleido in one browser session for all of a stage's figures; when no browser is found the export
is logged once and skipped, never fatal.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from pathlib import Path

import plotly.graph_objects as go

from llmjp_ckpt import atomic

log = logging.getLogger(__name__)
PLOTLY_JS = "plotly.min.js"
PLOTLY_SRC = f'<script charset="utf-8" src="{PLOTLY_JS}"></script>'  # what "directory" writes


def safe_name(text: str) -> str:
    """``text`` as part of a figure's file name: runs of anything but letters, digits, ``_.-``
    become one ``_``."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)


def plotly_js_path() -> Path:
    """plotly.min.js inside the installed plotly package."""
    import plotly

    return Path(plotly.__file__).parent / "package_data" / PLOTLY_JS


def ensure_plotly_js(out_dir: Path) -> Path:
    """One ``plotly.min.js`` in ``out_dir`` (rewritten only when it differs)."""
    src, dst = plotly_js_path(), out_dir / PLOTLY_JS
    data = src.read_bytes()
    if not dst.is_file() or dst.stat().st_size != len(data) or dst.read_bytes() != data:
        atomic.write_bytes(dst, data)
    return dst


def write_figures(figures: dict[str, go.Figure], out_dir: Path,
                  png: bool = True) -> dict[str, list[str]]:
    """Write ``name.html`` for every figure (plotly.js shared in ``out_dir``) and, if a browser
    is found, ``name.png``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[str]] = {}
    if figures:
        ensure_plotly_js(out_dir)
    for name, fig in figures.items():
        path = out_dir / f"{name}.html"
        html = fig.to_html(include_plotlyjs="directory", full_html=True)
        if PLOTLY_SRC not in html:  # plotly changed its tag: the site could not relink it
            raise RuntimeError(f"plotly's include_plotlyjs='directory' tag changed: {html[:300]}")
        atomic.write_text(path, html)
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
