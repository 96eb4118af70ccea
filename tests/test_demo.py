"""The whole demo on the quick toy world, with XSS payloads planted in the corpus.

The toy is the session fixture (built once); payload sentences are added to a third of its
documents, then ``run_demo`` runs data -> SAEs -> features -> compare -> site. The pages must
open offline in Chromium with nothing executed and the payloads shown literally; a rerun skips
every stage.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import pytest

from llmjp_ckpt.demo import TOY_STAGE, run_demo, toy_stage_config
from llmjp_ckpt.runfolder import RunFolder

pytestmark = pytest.mark.slow

PAYLOADS = [
    "<script>document.title='XSS1';window.__xss=1</script>",
    "<img src=x onerror=\"document.title='XSS2';window.__xss=2\">",
    "</span><b onmouseover=\"window.__xss=3\">x</b>",
    "\"onmouseover=\"window.__xss=4",
    "</script><script>document.title='XSS5'</script>",
]
STAGES = ["toy", "data", "train", "features", "compare", "planted", "site"]


def plant_payloads(corpus: Path) -> int:
    """Put a payload after the first sentence of every third document; return how many."""
    n = 0
    for shard in sorted(corpus.rglob("*.jsonl.gz")):
        with gzip.open(shard, "rt", encoding="utf-8") as fh:
            docs = [json.loads(line) for line in fh]
        for i, d in enumerate(docs):
            if i % 3 == 0:
                cut = max(d["text"].find("。"), d["text"].find(". "))
                cut = cut + 1 if cut >= 0 else 0
                d["text"] = d["text"][:cut] + " " + PAYLOADS[n % len(PAYLOADS)] + " " + d["text"][cut:]
                n += 1
        with gzip.open(shard, "wt", encoding="utf-8") as fh:
            fh.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
    return n


@pytest.fixture(scope="module")
def demo(toy_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("demo")
    shutil.copytree(toy_dir, out / "toy")
    assert plant_payloads(out / "toy" / "corpus") > 10
    RunFolder(out).record(TOY_STAGE, toy_stage_config(True, 0)[0], "done")  # the toy is given
    return run_demo(out, quick=True)


def test_every_stage_done_and_outputs_exist(demo):
    run = demo.parents[1]
    stages = RunFolder(run).manifest()["stages"]
    for name in STAGES:
        assert stages.get(name, {}).get("status") == "done", (name, stages.get(name))
    assert (run / "analysis" / "features.parquet").exists()
    assert (run / "analysis" / "transitions.json").exists()
    saes = sorted((run / "saes").glob("iter_*/*/metrics.json"))
    assert len(saes) >= 4 * 3  # every toy checkpoint x three normalisations


def test_planted_features_get_the_planted_language(demo):
    from llmjp_ckpt.toy.planted import planted_agreement

    res = planted_agreement(demo.parents[1])
    print("planted-language agreement:", {k: v for k, v in res.items() if k != "disagreements"})
    assert res["features_covered"] >= 20
    assert res["agree_paper"] >= 0.95 and res["agree_script"] >= 0.95


def test_planted_timeline_and_recovery_cover_every_checkpoint(demo):
    run = demo.parents[1]
    timeline = json.loads((run / "toy" / "planted_timeline.json").read_text(encoding="utf-8"))
    rec = json.loads((run / "analysis" / "planted_recovery.json").read_text(encoding="utf-8"))
    steps = [str(s) for s in timeline["steps"]]
    assert [str(r["step"]) for r in rec["timeline"]] == steps
    assert len(rec["saes"]) == 3  # the three normalisations
    for entry in rec["saes"].values():
        assert sorted(entry["checkpoints"], key=int) == steps
        for step, c in entry["checkpoints"].items():
            assert 0 <= c["shares"]["mix_paper"] <= 1
            # the quick toy learns its concepts late (none / 0-2 planted features at 10 and 30,
            # 6-15 at 200 on 2 Dec): only the last checkpoint must have one
            assert c["planted"] >= (1 if step == steps[-1] else 0), (step, c["planted"])
            planted = timeline["checkpoints"][steps.index(step)]["bilingual"]
            assert c["vs_timeline"]["timeline_bilingual"] == len(planted)
    assert (run / "analysis" / "figures" / "planted_vs_recovered.html").is_file()
    assert "Planted truth vs recovered" in demo.read_text(encoding="utf-8")


def test_meaning_sources_scored_against_the_planted_synonyms(demo):
    from llmjp_ckpt.toy.recovery import synonym_sources

    run = demo.parents[1]
    res = synonym_sources(run, thresholds=(-1.0,))  # every pair of forms with a W_E row related
    assert res["sources"] == ["rules", "rules+JMdict", "rules+W_E>=-1.0", "rules+JMdict+W_E>=-1.0"]
    timeline = json.loads((run / "toy" / "planted_timeline.json").read_text(encoding="utf-8"))
    last = str(timeline["steps"][-1])
    assert len(res["saes"]) == 3 and res["embeddings_of_step"] == int(last)
    for steps in res["saes"].values():
        assert sorted(steps, key=int) == [str(s) for s in timeline["steps"]]
        for row in steps.values():
            assert len({v["actual"] for v in row.values()}) == 1  # one planted truth per step
            for v in row.values():
                assert v["tp"] <= min(v["predicted"], v["actual"]) and 0 <= (v["synonym_share"] or 0) <= 1
    # the embeddings are read: with every pair related, most multi-form latents become synonym
    share = {src: sum(steps[last][src]["synonym_share"] for steps in res["saes"].values())
             for src in res["sources"]}
    assert share["rules+W_E>=-1.0"] > share["rules"] + 0.3


def test_transitions_equal_recomputation_on_the_toy_series(demo):
    import pandas as pd

    from tests.compare.test_transitions import _recomputed_shares

    run = demo.parents[1]
    data = json.loads((run / "analysis" / "transitions.json").read_text(encoding="utf-8"))
    df = pd.read_parquet(run / "analysis" / "features.parquet")
    assert len(data["families"]) == 3  # one series per normalisation
    for sae_id, fam in data["families"].items():
        sub = df[df["sae_id"] == sae_id]
        assert fam["checkpoints"] == sorted(sub["checkpoint"].unique().tolist())
        for subset in ("all", "alive", "interpretable"):
            for column in ("language_paper", "language_script", "granularity"):
                expected = _recomputed_shares(sub, subset, column, run)
                got = {s: fam["per_checkpoint"][subset][s][column] for s in fam["per_checkpoint"][subset]}
                assert got.keys() == expected.keys()
                for s in expected:
                    assert got[s] == pytest.approx(expected[s]), (sae_id, subset, column, s)


def test_rerun_skips_every_stage(demo):
    run = demo.parents[1]
    before = RunFolder(run).manifest()["stages"]
    assert run_demo(run, quick=True) == demo
    after = RunFolder(run).manifest()["stages"]
    assert {k: v["updated"] for k, v in after.items()} == {k: v["updated"] for k, v in before.items()}


def test_no_raw_payload_in_any_page(demo):
    site = demo.parent
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        for p in PAYLOADS:
            assert p not in html, f"{page}: raw payload {p!r}"


def test_browser_nothing_executes_and_text_is_literal(demo):
    pytest.importorskip("websocket")
    if not shutil.which("chromium"):
        pytest.skip("chromium not installed (make setup installs Debian's chromium)")
    from tests.site.test_site_browser import Browser, _offline_ok, _readable

    site = demo.parent
    run = demo.parents[1]
    figures = [Path(p[0]) for p in json.loads((run / "analysis" / "transitions.json").read_text())["figures"].values()]
    pages = [demo, *sorted((site / "browser").glob("*.html"))]
    shown = []
    b = Browser()
    try:
        for page in pages:
            res = b.open(page)
            _offline_ok(res, page)
            _readable(res, page)
            assert res["xss"] is None, f"{page}: a payload ran (window.__xss={res['xss']})"
            shown.append(res["text"])
        for fig in figures[:3]:  # the comparison figures open offline and draw
            res = b.open(fig, settle=2.0)
            _offline_ok(res, fig)
            assert res["svgs"] > 0, f"{fig}: figure not drawn"
        b.open(pages[1])
        b.screenshot("demo_feature_browser.png")
    finally:
        b.close()
    joined = "\n".join(shown)
    assert any(p.split("document")[0] in joined for p in PAYLOADS[:2]), "payload text not shown literally"
