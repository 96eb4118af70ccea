"""The index's planted-truth section: built from planted_recovery.json, escaped, absent without it."""

from __future__ import annotations

import json
from pathlib import Path

from llmjp_ckpt.site.planted import FILE, planted_context
from llmjp_ckpt.site.templating import render

PAYLOAD = "<script>window.__xss=1</script>"


def write_result(run: Path) -> None:
    score = {"tp": 2, "predicted": 3, "actual": 4, "precision": 0.6667, "recall": 0.5}
    res = {
        "min_share": 0.9,
        "timeline": [{"step": 10, "bilingual_share": 0.0, "grouped_share": 0.5, "translation_acc": 0.0},
                     {"step": 1000, "bilingual_share": 0.25, "grouped_share": 1.0, "translation_acc": 0.5,
                      "merged_share": 0.75}],
        "saes": {PAYLOAD: {"checkpoints": {
            "1000": {"planted": 40, "bilingual": 4, "mix_paper": score, "concept_level": score,
                     "shares": {"mix_paper": 0.2, "concept_level": 0.3, "synonym": 0.08, "semantic": 0.22},
                     "vs_timeline": {"both": 3, "timeline_bilingual": 12},
                     "variants_vs_timeline": {"both": 7, "timeline": 19}},
            "10": {"planted": 5, "bilingual": 0, "mix_paper": None, "concept_level": None,
                   "shares": {"mix_paper": 0.3, "concept_level": None}}},
            "lineage_births": {"with_timeline_step": 2, "bilingual_from_matches_timeline": 1, "match_fraction": 0.5},
            "variant_births": {"with_timeline_step": 9, "from_matches_timeline": 6, "match_fraction": 0.6667}}},
    }
    (run / "analysis").mkdir(parents=True)
    (run / "analysis" / FILE).write_text(json.dumps(res), encoding="utf-8")


def test_section_rows_follow_the_checkpoints_and_escape(tmp_path):
    write_result(tmp_path)
    ctx = planted_context(tmp_path, [tmp_path / "figures" / "planted_vs_recovered.html"])
    assert ctx is not None and ctx["figure"] == "figures/planted_vs_recovered.html"
    assert [r["step"] for r in ctx["rows"]] == ["10", "1000"]  # numeric order, not text order
    last = ctx["rows"][1]
    assert last["planted_bilingual"] == "25 %" and last["mix"] == "20 %"
    assert last["mix_pr"] == "67 % / 50 % (2/4)" and last["concepts"] == "3 of 12"
    assert ctx["rows"][0]["mix_pr"] == "–"
    assert (last["merged"], last["synonym"], last["semantic"], last["variants"]) == ("75 %", "8 %", "22 %", "7 of 19")
    assert ctx["rows"][0]["merged"] == "–" and ctx["rows"][0]["variants"] == "–"  # older files: no variants
    assert [(b["kind"], b["matches"], b["of"], b["share"]) for b in ctx["births"]] == [
        ("translation", 1, 2, "50 %"), ("variant", 6, 9, "67 %")]  # the older key name still read
    html = render("planted.html", planted=ctx)
    assert PAYLOAD not in html and "&lt;script&gt;" in html
    assert "Planted truth vs recovered" in html
    assert "birth = timeline step" in html and "6 (67 %)" in html


def test_no_section_without_the_file(tmp_path):
    assert planted_context(tmp_path, []) is None
    assert render("planted.html", planted=None).strip() == ""
