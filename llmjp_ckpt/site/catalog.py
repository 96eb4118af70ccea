"""Per SAE, an index of ALL its features that stays browsable at 32,768 latents, from ``file://``.

``catalog/<iter>__<sae_id>.html`` loads ``catalog/<iter>__<sae_id>/index.js`` (one row per
feature: id, language, granularity, frequency, max activation, strongest tokens) and, when a
feature is opened, the one shard ``ex_NNNNN.js`` that holds its top examples. Data files are
JavaScript that call a global (``LLMJP_CATALOG(...)`` / ``LLMJP_SHARD(k, ...)``), added as
``<script>`` elements: a page opened from ``file://`` cannot ``fetch`` JSON, but it can load a
script. The data is JSON escaped for ``<script>`` (:func:`llmjp_ckpt.site.escape.json_for_script`)
and ``assets/catalog.js`` puts every string into the page with ``textContent``, never as HTML.
Search: a number finds that feature id; any other text finds the features whose strongest
tokens contain it (case-insensitive).
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmjp_ckpt import atomic
from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.site.escape import json_for_script
from llmjp_ckpt.site.templating import render
from llmjp_ckpt.tokens import PARTIAL, TokenText

SHARD = 256  # features per examples shard: ~1/128 of a 32,768-latent SAE per click
N_TOKENS = 5  # strongest tokens listed per feature
STRONG_WINDOWS = 10  # top windows per feature whose peak tokens make its "strongest tokens"
ACT_LEVELS = 100  # example activations stored as integers 0..100 of the feature's maximum
SCRIPT = "catalog.js"


def catalog_name(step: int, sae_id: str) -> str:
    return f"{step_dir(step)}__{sae_id}"


def copy_script(assets: Path) -> Path:
    """``assets/catalog.js`` from the package."""
    data = resources.files("llmjp_ckpt.site").joinpath("static", SCRIPT).read_bytes()
    dst = assets / SCRIPT
    atomic.write_bytes(dst, data)
    return dst


def _windows(store: Any, tt: TokenText, wanted: list[int]) -> dict[int, list[str]]:
    """Display text of the ``wanted`` windows (each once), by window id."""
    t, first = store.t, int(store.meta["first_position"])
    rows = store_rows(store, wanted)
    toks = t["window_tokens"][rows].tolist()
    return {w: [s.replace("\n", "\u21b5") for s in tt.display(ids, hide_bos=True)[first:]]
            for w, ids in zip(tqdm(wanted, desc="site: catalog windows", leave=False,
                                   mininterval=2), toks)}


def store_rows(store: Any, window_ids: list[int]) -> Any:
    import torch

    return torch.searchsorted(store.t["window_ids"], torch.tensor(window_ids, dtype=torch.long))


def _clean(x: Any) -> Any:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return None
    return x


def catalog_data(df: Any, store: Any, tt: TokenText, n_examples: int, context: int
                 ) -> tuple[list[list[Any]], list[dict[str, Any]]]:
    """(index rows, examples per feature) for one SAE; ``df`` its rows of features.parquet."""
    import torch

    by_feature = {int(r["feature"]): r for r in df.to_dict("records")}
    d_sae = int(store.d_sae) if store is not None else (max(by_feature, default=-1) + 1)
    rows: list[list[Any]] = []
    examples: list[dict[str, Any]] = []
    if store is not None:
        n_win = max(n_examples, STRONG_WINDOWS)
        top = store.t["top_windows"][:, :n_win]
        wins = top.tolist()
        shown = _windows(store, tt, torch.unique(top[top >= 0]).tolist())
        acts = store.t["top_token_acts"][:, :n_win].float()
        peaks = acts.argmax(dim=2).tolist()
        scale = acts.amax(dim=(1, 2)).clamp_min(1e-12)
        q = torch.round(acts / scale[:, None, None] * ACT_LEVELS).to(torch.int16).tolist()
        scale = scale.tolist()
    for f in tqdm(range(d_sae), desc="site: catalog features", leave=False, mininterval=2):
        r = by_feature.get(f, {})
        strongest: list[str] = []
        exs: list[list[Any]] = []
        if store is not None:
            for j, w in enumerate(wins[f]):
                if w < 0:
                    continue
                text = shown[w]
                p = peaks[f][j]
                while p < len(text) - 1 and text[p] == PARTIAL:  # shown on the completing token
                    p += 1
                tok = text[p].strip() if p < len(text) else ""
                if (tok and tok not in strongest and len(strongest) < N_TOKENS
                        and j < STRONG_WINDOWS):
                    strongest.append(tok)
                if len(exs) < n_examples:
                    lo = max(0, peaks[f][j] - context)
                    hi = min(len(text), peaks[f][j] + context + 1)
                    exs.append([lo > 0, hi < len(text), text[lo:hi], q[f][j][lo:hi]])
        rows.append([f, _clean(r.get("language_script")), _clean(r.get("granularity")),
                     _clean(r.get("frequency")), _clean(r.get("max_activation")), strongest])
        examples.append({"scale": scale[f] if store is not None else 0.0, "examples": exs})
    return rows, examples


def write_catalog(out: Path, step: int, sae_id: str, df: Any, store: Any, tt: TokenText,
                  n_examples: int, context: int, sae_weights_hash: str | None = None) -> Path:
    """Write one SAE's catalog page, index and shards under ``out/catalog/``; return the page."""
    name = catalog_name(step, sae_id)
    folder = out / "catalog" / name
    folder.mkdir(parents=True, exist_ok=True)
    rows, examples = catalog_data(df, store, tt, n_examples, context)
    info = {"title": f"{step_dir(step)} / {sae_id}", "shard": SHARD, "levels": ACT_LEVELS,
            "columns": ["id", "language", "granularity", "frequency", "max", "tokens"],
            "rows": rows}
    atomic.write_text(folder / "index.js", f"LLMJP_CATALOG({json_for_script(info)});\n")
    for k in range(0, len(examples), SHARD):
        atomic.write_text(folder / f"ex_{k // SHARD:05d}.js",
                          f"LLMJP_SHARD({k // SHARD}, {json_for_script(examples[k:k + SHARD])});\n")
    langs = sorted({str(r[1]) for r in rows if r[1] is not None})
    grans = sorted({str(r[2]) for r in rows if r[2] is not None})
    page = render("catalog.html", title=f"{step_dir(step)} / {sae_id}: all {len(rows)} features",
                  root="..", langs=langs, grans=grans, data_dir=name, n=len(rows),
                  meta={"llmjp-sae-weights-hash": sae_weights_hash} if sae_weights_hash else {},
                  scripts=["../assets/" + SCRIPT, f"{name}/index.js"])
    path = out / "catalog" / f"{name}.html"
    atomic.write_text(path, page)
    return path
