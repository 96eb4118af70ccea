"""The quick demo with a byte-level BPE toy (``--tokenizer byte-bpe``): every page shows real
characters (no ``Ġ``, no mojibake) and the script rule gives planted features their language."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llmjp_ckpt.demo import run_demo

pytestmark = pytest.mark.slow

# A UTF-8 lead byte (U+00C2-U+00F4 read as Latin-1) followed by a continuation byte read as
# Latin-1 (U+0080-U+00BF) or written in the byte-level alphabet (U+0100-U+0143): mojibake.
MOJIBAKE = re.compile("[\u00c2-\u00f4][\u0080-\u00bf\u0100-\u0143]")


@pytest.fixture(scope="module")
def demo_bpe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return run_demo(tmp_path_factory.mktemp("demo_bpe"), quick=True, tokenizer="byte-bpe")


def test_the_toy_is_byte_level_bpe(demo_bpe: Path) -> None:
    run = demo_bpe.parents[1]
    info = json.loads((run / "toy" / "toy.json").read_text(encoding="utf-8"))
    assert info["tokenizer"] == "byte-bpe"
    assert (run / "toy" / "tokenizer" / "tokenizer.json").is_file()
    assert not (run / "toy" / "tokenizer" / "tokenizer.model").exists()


def test_no_byte_alphabet_and_no_mojibake_in_any_page(demo_bpe: Path) -> None:
    pages = sorted(demo_bpe.parent.rglob("*.html"))
    assert len(pages) > 3
    japanese = 0
    for page in pages:
        text = page.read_text(encoding="utf-8")
        assert "Ġ" not in text and "Ċ" not in text, page
        bad = MOJIBAKE.search(text)
        assert bad is None, (page, text[max(0, bad.start() - 40): bad.end() + 40])
        japanese += any(form in text for form in ("猫", "犬", "京都", "です"))
    assert japanese > 0  # Japanese appears as text


def test_planted_language_agreement_with_byte_bpe(demo_bpe: Path) -> None:
    res = json.loads((demo_bpe.parents[1] / "analysis" / "planted_language.json").read_text())
    assert res["features_covered"] >= 10
    assert res["by_language"]["ja"] > 0 and res["by_language"]["en"] > 0
    assert res["agree_paper"] >= 0.95, res
    # The script rule counts every token at >= half a window's max. Since the generic frames,
    # the quick byte-BPE toy has "any concept noun" features that fire as strongly on black as
    # on 黒 in glossed and parallel windows: the max token (the planted truth) is ja, the script
    # rule says mix (0.944 of 215 agree, 2 Dec).
    assert res["agree_script"] >= 0.9, res
