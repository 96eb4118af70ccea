"""The site's feature catalog (every feature of an SAE, examples in shards) and the index's
order and shared plotly.js, without a browser (tests/site/test_site_browser.py drives one)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from benchmarks.bench_site_index import synthetic_store, synthetic_table
from llmjp_ckpt.site.catalog import SHARD, catalog_data, write_catalog
from tests.site_builders import PAYLOAD_PIECES

BYTE_PIECE = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def _js_payload(path: Path, call: str) -> object:
    """The JSON a data file passes to ``call(...)``."""
    text = path.read_text(encoding="utf-8")
    assert text.startswith(call + "(") and text.rstrip().endswith(");")
    body = text[len(call) + 1: text.rstrip().rindex(")")]
    if call == "LLMJP_SHARD":
        body = body.split(",", 1)[1]
    return json.loads(body)


def test_catalog_lists_every_feature_with_examples_in_shards(tmp_path):
    store, tt = synthetic_store(d_sae=600, n_top=12, n_windows=300)
    df = synthetic_table(store)
    rows, examples = catalog_data(df, store, tt, n_examples=3, context=4)
    assert [r[0] for r in rows] == list(range(600)) and len(examples) == 600
    dead = [f for f in range(600) if int(store.t["top_windows"][f, 0]) < 0]
    assert dead and all(examples[f]["examples"] == [] and rows[f][5] == [] for f in dead)
    live = [f for f in range(600) if f not in dead]
    assert all(len(examples[f]["examples"]) == 3 and rows[f][5] for f in live)
    f = live[0]
    assert rows[f][1] == df["language_script"][f] and rows[f][3] == pytest.approx(df["frequency"][f])
    # the strongest token is the text at the peak of the top window, readable (no ▁ / <0x..>)
    _, _, toks, acts = examples[f]["examples"][0]
    assert max(acts) == 100 and toks[acts.index(100)].strip() == rows[f][5][0]
    for r in rows:
        assert not any("\u2581" in t or BYTE_PIECE.search(t) for t in r[5])
    page = write_catalog(tmp_path, 10, "s", df, store, tt, 3, 4)
    folder = page.parent / page.stem
    assert len(list(folder.glob("ex_*.js"))) == -(-600 // SHARD)
    info = _js_payload(folder / "index.js", "LLMJP_CATALOG")
    assert info["rows"] == json.loads(json.dumps(rows))
    shard = _js_payload(folder / "ex_00001.js", "LLMJP_SHARD")
    assert shard[0] == json.loads(json.dumps(examples[SHARD]))
    html = page.read_text(encoding="utf-8")
    assert '<script src="../assets/catalog.js"></script>' in html
    assert f'<script src="{page.stem}/index.js"></script>' in html


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.site_builders import built_site

    return built_site(tmp_path_factory.getbasetemp())


def test_catalog_data_escaped_and_payloads_kept(built):
    *_, index = built
    site = index.parent
    files = sorted((site / "catalog").rglob("*.js"))
    assert files, "no catalog data written"
    seen = False
    for p in files:
        text = p.read_text(encoding="utf-8")
        assert not set("<>&\u2028\u2029") & set(text), f"{p}: unescaped for a script"
        seen |= "onerror=document.title" in text or "XSS1" in text
    assert seen, "the payload windows never reached the catalog (test would prove nothing)"
    shards = [_js_payload(p, "LLMJP_SHARD") for p in files if p.name.startswith("ex_")]
    texts = ["".join(t) for sh in shards for feat in sh for _, _, t, _ in feat["examples"]]
    # the payload pieces are kept as text in the examples, not dropped or altered
    assert any(piece in t for piece in PAYLOAD_PIECES for t in texts)


def test_index_leads_with_findings_and_shares_plotly(built):
    *_, index = built
    site = index.parent
    html = index.read_text(encoding="utf-8")
    # the language rule compare used (transitions.json language_column: paper by default)
    lang = html.find('src="figures/features_language_paper.html"')
    gran = html.find('src="figures/features_granularity.html"')
    assert 0 < lang < gran < html.find("<table"), "headline figures must come before any table"
    assert html.find("Lineages and crosscoder") < html.find("<table")
    assert re.search(r'href="catalog/iter_0000010__none\.html"', html)
    # plotly.js once in the whole site; every figure loads it from assets/
    copies = [p for p in site.rglob("*.js") if p.name == "plotly.min.js"]
    assert [p.relative_to(site).as_posix() for p in copies] == ["assets/plotly.min.js"]
    for fig in (site / "figures").glob("*.html"):
        text = fig.read_text(encoding="utf-8")
        assert 'src="../assets/plotly.min.js"' in text and len(text) < 1_000_000, fig
    assert (site / "figures" / "features_granularity.html").is_file()
