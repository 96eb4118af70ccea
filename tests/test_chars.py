"""Character classes, byte pieces and the language threshold (llmjp_ckpt.chars)."""

from __future__ import annotations

import pytest

from llmjp_ckpt import chars


@pytest.mark.parametrize(
    ("ch", "expected"),
    [
        ("あ", "ja"), ("ア", "ja"), ("ー", "ja"), ("ㇰ", "ja"), ("京", "ja"), ("㐀", "ja"),
        ("豈", "ja"), ("𠀋", "ja"), ("々", "ja"), ("〆", "ja"), ("〇", "ja"), ("〻", "ja"),
        ("a", "en"), ("Z", "en"), ("é", "en"), ("ß", "en"),
        ("・", "neutral"), ("1", "neutral"), ("１", "neutral"), (",", "neutral"),
        ("。", "neutral"), ("「", "neutral"), (" ", "neutral"), ("\n", "neutral"),
        ("$", "neutral"), ("α", "neutral"), ("한", "neutral"), ("ｱ", "neutral"),
    ],
)
def test_char_script(ch: str, expected: str) -> None:
    assert chars.char_script(ch) == expected
    assert chars.is_neutral_char(ch) == (expected == "neutral")


def test_class_boundaries() -> None:
    assert chars.is_hiragana("\u3041") and chars.is_hiragana("\u309f")
    assert not chars.is_hiragana("\u3040") and not chars.is_hiragana("\u30a0")
    assert chars.is_katakana("\u30a0") and chars.is_katakana("\u30ff")
    assert not chars.is_katakana("\u309f") and not chars.is_katakana("\u3100")
    assert chars.is_kanji("\u4e00") and chars.is_kanji("\u9fff") and chars.is_kanji("\u3400")
    assert not chars.is_kanji("\u4dc0") and not chars.is_kanji("\ua000")
    assert chars.is_halfwidth_katakana("ｱ") and not chars.is_halfwidth_katakana("ア")
    assert chars.is_ascii_letter("q") and not chars.is_ascii_letter("é")
    assert chars.is_latin_letter("é") and not chars.is_latin_letter("1")


def test_composites_keep_their_callers_semantics() -> None:
    # the norm study counts ・ and half-width kana as Japanese, the script rule does not
    assert chars.is_japanese_char_norm_study("・") and not chars.is_japanese_char("・")
    assert chars.is_japanese_char_norm_study("ｱ") and not chars.is_japanese_char("ｱ")
    assert not chars.is_japanese_char_norm_study("〇") and chars.is_japanese_char("〇")
    assert chars.is_katakana_letter("ア") and chars.is_katakana_letter("ー")
    assert not chars.is_katakana_letter("・") and not chars.is_katakana_letter("゠")
    assert chars.is_kana("ん") and chars.is_kana("ン") and not chars.is_kana("京")
    assert chars.in_cjk_span("ぁ") and not chars.in_cjk_span("〇")
    assert chars.in_cjk_span("\u9fff") and not chars.in_cjk_span("\ua000")


@pytest.mark.parametrize(
    ("piece", "byte"),
    [("<0xE3>", 0xE3), ("<0x0a>", 0x0A), ("<0x00>", 0), ("▁<0xE3>", None), ("京", None),
     ("<0xE3><0x81>", None), ("<0x1>", None), ("<0xZZ>", None), (" <0x41>", None)],
)
def test_byte_pieces(piece: str, byte: int | None) -> None:
    assert chars.byte_of_piece(piece) == byte
    assert chars.is_byte_piece(piece) == (byte is not None)


def test_strip_byte_pieces() -> None:
    assert chars.strip_byte_pieces("a<0xE3><0x81>b<0x0A>") == "ab"
    assert chars.strip_byte_pieces("<0xZZ>") == "<0xZZ>"


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        ({"en": 10, "ja": 0}, "en"),
        ({"en": 0, "ja": 10}, "ja"),
        ({"en": 91, "ja": 9}, "en"),  # 0.91 > 0.9
        ({"en": 9, "ja": 1}, "mix"),  # exactly 0.9 is not more than 0.9
        ({"en": 5, "ja": 5}, "mix"),
        ({"en": 0, "ja": 0}, "mix"),  # no evidence
        ({}, "mix"),
        ({"en": 9.5, "ja": 0.5}, "en"),  # activation-weighted votes
        ({"ja": 19, "other": 1}, "ja"),
        ({"ja": 9, "other": 1}, "mix"),  # other keys count towards the total
    ],
)
def test_majority_language(counts: dict[str, float], expected: str) -> None:
    assert chars.LANGUAGE_THRESHOLD == 0.9
    assert chars.majority_language(counts) == expected
