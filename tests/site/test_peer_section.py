"""The index's section on the study's (peer) SAEs: rows from transitions.json's ``peers``, links
to our feature browser and the peer folder, escaped, absent without peers."""

from __future__ import annotations

import json
from pathlib import Path

from llmjp_ckpt.site.peers import peer_context
from llmjp_ckpt.site.templating import render

PAYLOAD = "<script>window.__xss=1</script>"


def write_transitions(run: Path, peer_folder: Path) -> None:
    row = {"checkpoint": 1000, "sae_id": "x16_k32_lr0.001_scalar", "peer_features": 40, "our_features": 38,
           "found": 30, "found_fraction": 0.75, "median_cosine_found": 0.9312, "median_nearest_cosine": 0.88}
    peers = {PAYLOAD: {"threshold": 0.7, "per_checkpoint": [row], "notes": ["step 10: none of our SAEs"],
                       "folders": {"1000": str(peer_folder)}}}
    (run / "analysis").mkdir(parents=True)
    (run / "analysis" / "transitions.json").write_text(json.dumps({"peers": peers}), encoding="utf-8")


def test_rows_link_both_and_escape(tmp_path):
    write_transitions(tmp_path, tmp_path / "peer" / "iter_0001000" / "study")
    fig = tmp_path / "figures" / "peer__script_window.__xss_1_script_.html"
    ctx = peer_context(tmp_path, [fig])
    assert len(ctx) == 1 and ctx[0]["figure"] == f"figures/{fig.name}"
    (row,) = ctx[0]["rows"]
    assert row["found"] == "30 / 40 (75 %)" and row["cosine"] == "0.93" and row["nearest"] == "0.88"
    assert row["browser"] == "browser/iter_0001000__x16_k32_lr0.001_scalar.html"
    assert row["peer_folder"].startswith("file://") and row["peer_folder"].endswith("/iter_0001000/study")
    html = render("peers.html", peers=ctx)
    assert PAYLOAD not in html and "&lt;script&gt;" in html
    assert 'href="browser/iter_0001000__x16_k32_lr0.001_scalar.html"' in html and "step 10: none" in html


def test_no_section_without_peers(tmp_path):
    assert peer_context(tmp_path, []) == []
    (tmp_path / "analysis").mkdir()
    (tmp_path / "analysis" / "transitions.json").write_text("{}", encoding="utf-8")
    assert peer_context(tmp_path, []) == []
    assert render("peers.html", peers=[]).strip() == ""
