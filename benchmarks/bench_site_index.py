"""P7: the site's feature catalog (every feature of one SAE) at the study's width, 32,768 latents.

A synthetic top-N store (random windows over a small Japanese/English SentencePiece-style
vocabulary, ``--n-top`` examples per latent as the features stage keeps) and a features table
go through :func:`llmjp_ckpt.site.catalog.write_catalog`, as ``llmjp-ckpt site`` calls it for
each SAE. Prints the build time and the sizes (index, shards, largest shard); with
``--browser`` (needs chromium and websocket-client) it also opens the page headless from
``file://`` and times the load, a search by feature id, a search by a Japanese token and opening
one feature's examples (one shard loaded on demand). Run:

    .venv/bin/python benchmarks/bench_site_index.py [--d-sae 32768] [--browser] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.site: the DevTools driver

JA = ["猫", "ネコ", "京都", "東京", "鰻丼", "学校", "先生", "電車", "山", "川", "食べる", "です",
      "ます", "の", "は", "を", "に", "が", "日本", "語"]
EN = ["cat", "Kyoto", "Tokyo", "school", "teacher", "train", "river", "eat", "the", "is", "of"]


def synthetic_vocab() -> Any:
    """A SentencePiece-style TokenText: ▁-words, plain pieces and byte-fallback pieces."""
    from llmjp_ckpt.tokens import TokenText

    pieces = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    pieces += JA + [f"\u2581{w}" for w in EN] + [f"\u2581{w}{i}" for w in EN for i in range(40)]
    return TokenText(tuple(pieces), bos_id=1)


def synthetic_store(d_sae: int, n_top: int, n_windows: int, length: int = 65, seed: int = 0):
    """A FeatureStore in memory with the features stage's tensors and shapes."""
    from llmjp_ckpt.features.store import FeatureStore

    g = torch.Generator().manual_seed(seed)
    tt = synthetic_vocab()
    ja_ids = list(range(259, 259 + len(JA)))
    words = torch.randint(259, len(tt), (n_windows, length), generator=g)
    pick = torch.randint(0, len(ja_ids), (n_windows, (length + 2) // 3), generator=g)
    words[:, ::3] = torch.tensor(ja_ids)[pick]  # every third token Japanese
    words[:, 0] = 1  # BOS
    first = 1
    top_windows = torch.randint(0, n_windows, (d_sae, n_top), generator=g)
    top_windows[: d_sae // 10] = -1  # a tenth dead: no examples
    acts = torch.rand((d_sae, n_top, length - first), generator=g) ** 8
    acts[top_windows < 0] = 0
    order = acts.amax(2).argsort(dim=1, descending=True)  # the store keeps them descending
    top_windows, acts = top_windows.gather(1, order), acts[torch.arange(d_sae)[:, None], order]
    t = {"top_values": acts.amax(2), "top_windows": top_windows, "top_token_acts": acts.half(),
         "fire_count": (top_windows >= 0).sum(1) * 7, "act_sum": acts.sum((1, 2)).double(),
         "max_activation": acts.amax((1, 2)), "window_ids": torch.arange(n_windows),
         "window_tokens": words.to(torch.int32)}
    meta = {"schema": 1, "n_tokens": n_windows * 64, "n_windows": n_windows, "d_sae": d_sae,
            "n_top": n_top, "first_position": first}
    return FeatureStore(Path("synthetic"), meta, t), tt


def synthetic_table(store: Any) -> Any:
    import pandas as pd

    d = store.d_sae
    freq = store.frequency.numpy()
    return pd.DataFrame({"feature": range(d), "frequency": freq,
                         "max_activation": store.t["max_activation"].numpy(),
                         "language_script": [("ja", "en", "mixed")[f % 3] for f in range(d)],
                         "granularity": [("token", "synonym", "semantic", "uninterpretable")[f % 4]
                                         for f in range(d)]})


def browse(page: Path, feature: int, token: str) -> dict[str, float]:
    """Headless chromium from file://: load, search by id, search by token, open a feature."""
    from tests.site.test_site_browser import Browser

    b = Browser()
    try:
        def ev(expr: str) -> Any:
            return b.send("Runtime.evaluate", expression=expr, returnByValue=True,
                          awaitPromise=True)["result"].get("value")

        t0 = time.perf_counter()
        b.send("Page.navigate", url=page.resolve().as_uri())
        while not ev("window.__catalogReady === true"):
            time.sleep(0.02)
        load = time.perf_counter() - t0

        def search(q: str) -> tuple[float, int]:
            ms = ev("(() => { const i = document.getElementById('cat-q'); "
                    f"i.value = {json.dumps(q)}; i.dispatchEvent(new Event('input')); "
                    "return window.__catalogSearchMs; })()")
            return ms, ev("document.getElementById('cat-results').rows.length")

        id_ms, id_rows = search(str(feature))
        tok_ms, tok_rows = search(token)
        t1 = time.perf_counter()
        ev(f"LLMJP_open({feature})")
        while not ev("document.querySelectorAll('#cat-feature .ex').length > 0"):
            time.sleep(0.02)
        open_s = time.perf_counter() - t1
        shot = page.parent / "catalog_32k.png"
        import base64

        shot.write_bytes(base64.b64decode(b.send("Page.captureScreenshot", format="png")["data"]))
        return {"load_s": load, "id_search_ms": id_ms, "id_rows": id_rows,
                "token_search_ms": tok_ms, "token_rows_shown": tok_rows, "open_feature_s": open_s,
                "screenshot": str(shot)}
    finally:
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d-sae", type=int, default=32768)
    ap.add_argument("--n-top", type=int, default=50)
    ap.add_argument("--windows", type=int, default=20000)
    ap.add_argument("--browser", action="store_true")
    ap.add_argument("--out", default=None, help="keep the catalog here (default: a temp folder)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    from llmjp_ckpt.site.catalog import copy_script, write_catalog

    store, tt = synthetic_store(args.d_sae, args.n_top, args.windows)
    df = synthetic_table(store)
    out = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="bench-catalog-"))
    (out / "assets").mkdir(parents=True, exist_ok=True)
    copy_script(out / "assets")
    t0 = time.perf_counter()
    page = write_catalog(out, 988240, "scalar", df, store, tt, n_examples=5, context=12)
    build = time.perf_counter() - t0
    folder = page.parent / page.stem
    shards = sorted(folder.glob("ex_*.js"))
    mb = 1 << 20
    print(f"d_sae {args.d_sae}, n_top {args.n_top}, {args.windows} windows")
    print(f"build {build:.1f} s; page {page.stat().st_size / 1024:.1f} KB; "
          f"index.js {(folder / 'index.js').stat().st_size / mb:.2f} MB; "
          f"{len(shards)} shards {sum(p.stat().st_size for p in shards) / mb:.1f} MB "
          f"(largest {max(p.stat().st_size for p in shards) / 1024:.0f} KB)")
    if args.browser:
        res = browse(page, args.d_sae - 7, "猫")
        print("chromium: " + ", ".join(f"{k} {v:.3g}" if isinstance(v, float) else f"{k} {v}"
                                       for k, v in res.items()))
    if not args.out:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
