"""Unit tests of the site (no browser): escaping, sae-dashboard page post-processing, feature
selection, lineages, the built site's markup (no corpus text parsed as tags or attributes),
the manifest stage and the CLI."""

from __future__ import annotations

import json
import os
import re
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest
import torch

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.site import SiteConfig, build_site, escape
from llmjp_ckpt.site.feature_pages import redecode_sequences, single_token_text
from llmjp_ckpt.site.inputs import load_lineages, select_features
from llmjp_ckpt.tokens import TokenText
from tests.site_builders import PAYLOAD_PIECES, PAYLOAD_TEXT

PAYLOADS = [*PAYLOAD_PIECES, PAYLOAD_TEXT, "a\u2028b\u2029c & <!-- -->"]


class Markup(HTMLParser):
    """Every start tag and attribute name, and the text of each <script>."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[str] = []
        self.attrs: set[str] = set()
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.attrs.update(a for a, _ in attrs)
        self._in_script = tag == "script"
        if self._in_script:
            self.scripts.append("")

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts[-1] += data


def parse(page: str) -> Markup:
    m = Markup()
    m.feed(page)
    m.close()
    return m


@pytest.mark.parametrize("s", PAYLOADS)
def test_escape_text_and_json(s):
    assert not set("<>\"'") & set(escape.text(s))  # safe as text and as a quoted attribute
    js = escape.json_for_script({"k": [s]})
    assert not set("<>&\u2028\u2029") & set(js)
    assert json.loads(js) == {"k": [s]}  # still the same data once parsed
    page = f"<script>const D = {js};</script>"
    assert parse(page).tags == ["script"]  # the payload cannot end the script early
    assert escape.js_string(s)[0] == '"' and json.loads(escape.js_string(s)) == s


def test_single_and_window_token_text():
    pieces = ("<unk>", "<s>", "</s>", "\u2581京都", "<0xE9>", "<0xB0>", "<0xBB>", "\u2581The")
    tt = TokenText(pieces, bos_id=1)
    assert single_token_text(tt, 3) == " 京都"
    assert single_token_text(tt, 4) == "\\xE9"  # a lone byte: no <0x..> text
    assert single_token_text(tt, 20) == "<pad-id 20>"
    seq = [{"tok": "x", "tokID": i} for i in (1, 3, 4, 5, 6, 7)]
    assert redecode_sequences({"tokenData": {"g": {"data": [seq]}}}, tt) == 1
    assert "".join(t["tok"] for t in seq if t["tok"] != "\u25cc") == " 京都鰻 The"


def test_select_features_order_and_filters():
    df = pd.DataFrame({
        "feature": [0, 1, 2, 3, 4, 5],
        "frequency": [0.0, 0.5, 0.1, 0.3, 0.2, 0.05],
        "granularity": ["token", "token", "uninterpretable", None, "semantic", "synonym"],
        "granularity_confidence": [0.99, 0.2, 0.95, None, 0.9, 0.8],
    })
    cfg = SiteConfig(n_frequent=2, n_labelled=2)
    # lineage members first (even a dead one), then frequent, then labelled; no repeats
    assert select_features(df, cfg, {0, 3}) == [0, 3, 1, 4, 5]
    assert select_features(df, SiteConfig(n_frequent=0, n_labelled=5)) == [4, 5, 1]


def test_lineages_from_compare_parquet(tmp_path):
    folder = tmp_path / "analysis" / "lineages"
    folder.mkdir(parents=True)
    pd.DataFrame({"chain": [0, 1, 1, 2, 2, 2], "checkpoint": [10, 10, 30, 10, 30, 100],
                  "feature": [5, 6, 7, 8, 9, 3], "drift_to_final": [0.0] * 6}).to_parquet(folder / "a.parquet")
    pd.DataFrame({"chain": [0, 0], "checkpoint": [10, 30], "feature": [1, 2]}).to_parquet(folder / "b.parquet")
    lins = load_lineages(tmp_path, max_lineages=3)
    # longest first within a family, families taken in turn
    assert [lin.name for lin in lins] == ["a #2", "b #0", "a #1"]
    assert [(m.step, m.sae_id, m.feature) for m in lins[0].members] == [(10, "a", 8), (30, "a", 9), (100, "a", 3)]
    pd.DataFrame({"chain": [0]}).to_parquet(folder / "a.parquet")
    with pytest.raises(UserError, match="checkpoint"):
        load_lineages(tmp_path)


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from tests.site_builders import built_site

    return built_site(tmp_path_factory.getbasetemp())


def test_site_markup_has_no_corpus_tags(built):
    *_, index = built
    pages = sorted(index.parent.rglob("*.html"))
    ours = [p for p in pages if "figures" not in p.parts]  # figures: the compare stage's plotly HTML
    assert any("browser" in p.parts for p in ours) and any("lineages" in p.parts for p in ours)
    seen_payload = False
    for p in ours:
        page = p.read_bytes().decode("utf-8")  # written as UTF-8
        assert re.search(r"<head>\s*<meta charset=\"utf-8\">", page), p
        m = parse(page)
        assert not {"img", "svg"} & set(m.tags), f"{p}: corpus text became markup"
        assert not {"onerror", "onload", "onmouseover"} & m.attrs, f"{p}: corpus text became an attribute"
        assert "https://" not in page and "http://" not in page, f"{p}: network reference"
        assert "\u2581" not in page and not re.search(r"<0x[0-9A-Fa-f]{2}>", page)
        seen_payload |= "document.title=&#x27;XSS1&#x27;" in page or "XSS1" in "".join(m.scripts)
    assert seen_payload, "the payload windows never reached a page (test would prove nothing)"


def test_sae_dashboard_pages_offline_and_escaped(built):
    *_, index = built
    pages = sorted((index.parent / "features").rglob("feature_*.html"))
    if not pages:
        pytest.skip("d3 not installed (make setup): sae-dashboard pages were skipped")
    for p in pages:
        page = p.read_text(encoding="utf-8")
        m = parse(page)
        assert m.tags.count("script") == 3, f"{p}: expected d3, plotly and the page script only"
        srcs = re.findall(r'<script src="([^"]+)"', page)
        assert srcs == ["../../../assets/d3.v6.min.js", "../../../assets/plotly.min.js"]
        for s in srcs:
            assert (p.parent / s).resolve().is_file()
        assert "llmjpEscapeHtml(tok)" in page and "<code>${tok}</code>" not in page
        data = m.scripts[2]
        assert "</script" not in data.lower() and "\u2028" not in data
        assert len(page.encode("utf-8")) < 1_000_000
    # the browser pages link to them
    links = re.findall(r'href="\.\./(features/[^"]+)"', "".join(
        p.read_text(encoding="utf-8") for p in (index.parent / "browser").glob("*.html")))
    assert links and all((index.parent / link).is_file() for link in links)
    lin = re.findall(r'href="\.\./(lineages/[^"]+)"', "".join(
        p.read_text(encoding="utf-8") for p in (index.parent / "browser").glob("*.html")))
    assert lin and all((index.parent / link).is_file() for link in lin)


def test_manifest_stage_skip_and_rerun(built, tmp_path):
    import shutil

    from llmjp_ckpt.runfolder import RunFolder

    run, tt, model, cfg, _ = built
    run = Path(shutil.copytree(run, tmp_path / "run"))  # the shared run stays as built
    index = run / "dashboards" / "index.html"
    st = RunFolder(run).stage_record("site")
    assert st["status"] == "done" and st["browsers"] == 4 and st["lineages"] > 0
    assert index.parent.stat().st_mode & 0o777 == 0o755 and index.stat().st_mode & 0o777 == 0o644
    before = index.stat().st_mtime_ns
    assert build_site(run, cfg, model_loader=lambda s: model, token_text=tt) == index
    assert index.stat().st_mtime_ns == before  # same inputs: skipped
    lin = run / "analysis" / "lineages" / "scalar.parquet"
    pd.DataFrame({"chain": [7, 7], "checkpoint": [10, 100], "feature": [5, 6]}).to_parquet(lin)
    os.utime(lin, ns=(before + 10**9, before + 10**9))
    cfg2 = SiteConfig(feature_pages=False)
    build_site(run, cfg2, token_text=tt)
    assert "10:5 → 100:6" in index.read_text(encoding="utf-8")
    assert not (index.parent / "features" / "iter_0000010").exists()


def test_missing_features_table_is_a_user_error(tmp_path, capsys):
    from llmjp_ckpt.cli import main
    from tests.feature_builders import build_run

    run = build_run(tmp_path / "run", n_windows=4)
    assert main(["site", "--run", str(run), "--no-feature-pages"]) == 2
    err = capsys.readouterr().err
    assert "features.parquet" in err and "llmjp-ckpt features" in err
    assert not (run / "dashboards").exists()


def test_assets_from_installed_packages(tmp_path):
    from llmjp_ckpt.site import assets

    assert assets.plotly_js().name == "plotly.min.js"
    out = assets.copy_assets(tmp_path, need_d3=False)
    assert out["plotly.min.js"].read_bytes() == assets.plotly_js().read_bytes()


def test_site_config_yaml(tmp_path):
    repo = Path(__file__).resolve().parents[2]
    cfg = SiteConfig.from_yaml(repo / "configs" / "site.yaml")
    assert cfg == SiteConfig()  # the shipped file documents the defaults
    bad = tmp_path / "site.yaml"
    bad.write_text("n_frequent: 3\ncolour: red\n", encoding="utf-8")
    with pytest.raises(UserError, match="colour"):
        SiteConfig.from_yaml(bad)
    with pytest.raises(UserError, match="n_examples=-1"):
        SiteConfig(n_examples=-1)


def test_feature_pages_dead_feature_and_payload_pieces(tmp_path):
    """A feature that never fires still gets a valid page; payload pieces stay data."""
    from llmjp_ckpt.site.feature_pages import page_data, write_feature_pages
    from tests.feature_builders import build_model, build_sae, build_windows

    torch.set_num_threads(1)
    pieces = ["<unk>", "<s>", "</s>", *PAYLOADS] + [f"\u2581w{i}" for i in range(40)]
    tt = TokenText(tuple(pieces), bos_id=1)
    model = build_model(d_vocab=len(pieces) + 8)
    sae = build_sae(d_sae=16, k=2)
    with torch.no_grad():
        sae.b_enc[0] = -100.0  # never among the top k with a positive value
    toks = build_windows(16, 17, d_vocab=len(pieces))
    toks[:, 8] = 3 + torch.arange(16) % len(PAYLOADS)  # every window holds a payload piece
    w_enc_before = sae.W_enc.clone()
    pages = write_feature_pages(sae, model, toks, [0, 1, 2], tmp_path, tt, "assets", title="t")
    assert sorted(pages) == [0, 1, 2]
    assert torch.equal(sae.W_enc, w_enc_before)  # the caller's SAE is not folded
    for page in (p.read_text(encoding="utf-8") for p in pages.values()):
        m = parse(page)
        assert m.tags.count("script") == 3 and not {"img", "svg"} & set(m.tags)
        assert not {"onerror", "onload", "onmouseover"} & m.attrs
        data = m.scripts[2]
        assert "</script" not in data.lower() and "\u2028" not in data
        (feature_data,) = page_data(page)["DASHBOARD_DATA"].values()
        for key in ("actsHistogramData", "logitsHistogramData"):  # repeated ticks dropped
            assert all(len(h["ticks"]) == len(set(h["ticks"])) for h in feature_data[key].values())
    assert "XSS1" in pages[1].read_text(encoding="utf-8") + pages[2].read_text(encoding="utf-8")


def test_token_text_from_the_data_stage(built, tmp_path):
    from llmjp_ckpt.runfolder import RunFolder
    from llmjp_ckpt.site.inputs import resolve_token_text

    run, tt, *_ = built
    sp_model = run.parent / "tok" / "sp.model"
    rf = RunFolder(tmp_path / "run")
    with pytest.raises(UserError, match="tokenizer"):
        resolve_token_text(rf, None)
    rf.record("data", {"tokenizer": str(sp_model)}, "done")
    assert resolve_token_text(rf, None).pieces == tt.pieces


# ---- sae-dashboard pages agree with the top-N store (issue 11, item 7) -----------------------

def _store_top(store, feature):
    w = int(store.t["top_windows"][feature, 0])
    row = int(torch.searchsorted(store.t["window_ids"], torch.tensor(w)))
    return w, store.t["window_tokens"][row].tolist()


def test_every_page_top_example_is_the_store_top_window(built):
    from llmjp_ckpt.features.store import FeatureStore
    from llmjp_ckpt.saes.dead import weights_hash
    from llmjp_ckpt.site import assets
    from llmjp_ckpt.site.feature_pages import HASH_META, page_top_example

    if assets.d3_js() is None:
        pytest.skip("d3 not installed (make setup): no sae-dashboard pages")
    run, _, _, _, index = built
    pages = sorted((index.parent / "features").glob("iter_*/*/feature_*.html"))
    assert pages
    for p in pages:
        step, sid = p.parent.parent.name, p.parent.name
        feature = int(p.stem.removeprefix("feature_"))
        store = FeatureStore.load(run / "features" / step / sid)
        html = p.read_text(encoding="utf-8")
        ids, acts = page_top_example(html)
        _, window = _store_top(store, feature)
        assert ids == window[1:], p  # the same window (sae-dashboard drops the BOS)
        assert max(acts) == pytest.approx(float(store.t["top_values"][feature, 0]), rel=1e-2)
        h = weights_hash(run / "saes" / step / sid)
        assert f'<meta name="{HASH_META}" content="{h}">' in html


def test_page_top_example_is_the_store_top_even_outside_the_dashboard_windows(tmp_path):
    """The store's top window is fed to sae-dashboard even when it lies past the
    ``dashboard_windows`` test windows, and a top token at the window's edge still counts."""
    from llmjp_ckpt.features.store import FeatureStore, save_store
    from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
    from llmjp_ckpt.site.feature_pages import page_top_example, write_feature_pages
    from llmjp_ckpt.site.inputs import dashboard_tokens
    from tests.feature_builders import build_model, build_sae, build_token_text, build_windows

    torch.set_num_threads(1)
    tt, model, sae = build_token_text(), build_model(), build_sae(d_sae=16, k=2)
    toks = build_windows(40, 17)
    res = collect_topn(toks, model_encoder(model, {"s": sae}), {"s": 16},
                       TopNConfig(n_top=20))["s"]
    save_store(tmp_path / "store", res, toks, {})
    store = FeatureStore.load(tmp_path / "store")
    feats = [f for f in range(16) if int(store.t["top_windows"][f, 0]) >= 4][:3]
    assert feats  # top windows outside the first 4 test windows: the case that matters
    edge = [f for f in range(16) if int(store.t["top_token_acts"][f, 0].float().argmax()) < 5]
    feats += edge[:2]  # top token in the first positions: sae-dashboard's default buffer skips them
    pages = write_feature_pages(sae, model, dashboard_tokens(store, feats, toks[:4]), feats,
                                tmp_path / "pages", tt, "assets")
    for f in feats:
        ids, _ = page_top_example(pages[f].read_text(encoding="utf-8"))
        assert ids == _store_top(store, f)[1][1:], f


def test_page_top_example_breaks_ties_like_the_store(tmp_path):
    """Windows sharing a prefix tie on a top token inside it (a causal model sees the same
    prefix): the store keeps the earliest window, and so must the page."""
    from llmjp_ckpt.features.store import FeatureStore, save_store
    from llmjp_ckpt.features.topn import TopNConfig, collect_topn, model_encoder
    from llmjp_ckpt.site.feature_pages import page_top_example, write_feature_pages
    from llmjp_ckpt.site.inputs import dashboard_tokens
    from tests.feature_builders import build_model, build_sae, build_token_text, build_windows

    torch.set_num_threads(1)
    tt, model, sae = build_token_text(), build_model(), build_sae(d_sae=16, k=2)
    toks = build_windows(40, 17)
    toks[:, :9] = toks[7, :9]  # every window starts like window 7
    res = collect_topn(toks, model_encoder(model, {"s": sae}), {"s": 16},
                       TopNConfig(n_top=20))["s"]
    save_store(tmp_path / "store", res, toks, {})
    store = FeatureStore.load(tmp_path / "store")
    top = store.t["top_values"]
    tied = [f for f in range(16) if float(top[f, 1]) == float(top[f, 0]) > 0]
    assert tied  # top values shared by several windows
    pages = write_feature_pages(sae, model, dashboard_tokens(store, tied, toks[:4]), tied,
                                tmp_path / "pages", tt, "assets")
    for f in tied:
        assert int(store.t["top_windows"][f, 0]) == 0  # the earliest of the tied windows
        ids, _ = page_top_example(pages[f].read_text(encoding="utf-8"))
        assert ids == _store_top(store, f)[1][1:], f


def test_dedupe_ticks_keeps_order_and_other_fields():
    from llmjp_ckpt.site.feature_pages import dedupe_ticks

    js = {"logitsHistogramData": {"0": {"ticks": [-0.1] * 5 + [0, 0, 0.1], "x": [1, 1], "y": [2, 2]}},
          "actsHistogramData": {"0": {"ticks": [0, 1, 2]}}, "tokenData": {}}
    assert dedupe_ticks(js) == 5
    assert js["logitsHistogramData"]["0"] == {"ticks": [-0.1, 0, 0.1], "x": [1, 1], "y": [2, 2]}
    assert js["actsHistogramData"]["0"]["ticks"] == [0, 1, 2]


def test_example_spans_only_for_firing_tokens():
    from llmjp_ckpt.site.inputs import Example
    from llmjp_ckpt.site.render import render_example
    from llmjp_ckpt.tokens import PARTIAL

    ex = Example(tokens=["<b>x</b>", PARTIAL, "京", " the"], acts=[0.0, 0.0, 2.0, 0.0])
    html = render_example(ex, 2.0, 12)
    assert html.startswith('<div class="ex">&lt;b&gt;x&lt;/b&gt;<span class="tok partial" title="0.000">')
    assert '<span class="tok" style="background:rgba(255,102,0,1.000)" title="2.000">京</span> the</div>' in html
    assert html.count("<span") == 2  # the firing token and the partial-character box
