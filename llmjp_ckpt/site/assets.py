"""Where the pages' third-party scripts come from: installed packages, never a CDN.

- plotly.js ships inside the installed ``plotly`` package (``plotly/package_data/plotly.min.js``).
- d3 v6 (needed by sae-dashboard's pages) is fetched from the npm registry by ``make setup``
  into the gitignored ``.vendor/d3/`` folder of the clone (or of the current folder, or named
  with ``LLMJP_D3_JS`` for an installed copy); it is never committed to the repository.

:func:`copy_assets` copies them next to the pages (``RUN/dashboards/assets/``), so the site
opens from ``file://`` with no network.
"""

from __future__ import annotations

import os
from pathlib import Path

from llmjp_ckpt import atomic

PLOTLY_NAME = "plotly.min.js"
D3_NAME = "d3.v6.min.js"
D3_ENV = "LLMJP_D3_JS"
_REPO = Path(__file__).resolve().parents[2]  # the clone, for an editable install
_D3_IN_VENDOR = Path(".vendor") / "d3" / "package" / "dist" / "d3.min.js"
D3_VENDOR = _REPO / _D3_IN_VENDOR


def plotly_js() -> Path:
    """plotly.min.js from the installed plotly package."""
    import plotly

    path = Path(plotly.__file__).parent / "package_data" / PLOTLY_NAME
    if not path.is_file():  # a broken plotly install; nothing we can fetch offline
        raise FileNotFoundError(f"{path}: plotly.min.js missing from the installed plotly package")
    return path


def d3_js() -> Path | None:
    """d3 v6 from ``$LLMJP_D3_JS``, the clone's or the cwd's ``.vendor/d3``, else None."""
    env = os.environ.get(D3_ENV)
    for cand in ([Path(env)] if env else []) + [D3_VENDOR, Path.cwd() / _D3_IN_VENDOR]:
        if cand.is_file():
            return cand
    return None


def copy_assets(dest: str | Path, need_d3: bool = True) -> dict[str, Path]:
    """Copy the scripts into ``dest``; return ``{file name: path}`` of what is there."""
    dest = Path(dest)
    out: dict[str, Path] = {}
    sources = {PLOTLY_NAME: plotly_js()}
    d3 = d3_js() if need_d3 else None
    if d3 is not None:
        sources[D3_NAME] = d3
    for name, src in sources.items():
        target = dest / name
        data = src.read_bytes()
        if not target.is_file() or target.read_bytes() != data:
            atomic.write_bytes(target, data)
        out[name] = target
    return out
