"""Character classes, byte-fallback pieces and the language threshold: the one place for each.

Every script test in the package is built from the classes below (one implementation each):

* Japanese: :func:`is_hiragana`, :func:`is_katakana`, :func:`is_katakana_ext`,
  :func:`is_halfwidth_katakana`, :func:`is_kanji` (+ :func:`is_kanji_compat`,
  :func:`is_kanji_supplementary`) and the marks :data:`JA_MARKS` (々 〆 〇 〻).
* English: :func:`is_latin_letter` (any Latin-script letter, é included) and
  :func:`is_ascii_letter` (A–Z, a–z).
* Neutral: everything else — digits, punctuation, whitespace, symbols, other scripts
  (:func:`char_script`).

Callers that need a slightly different notion keep it as a clearly named composite here
(:func:`is_japanese_char`, :func:`is_japanese_char_norm_study`, :func:`in_cjk_span`,
:func:`is_katakana_letter`) rather than a private copy of the ranges.

Byte-fallback pieces (SentencePiece's ``<0xE3>``) are matched by :data:`BYTE_PIECE_RE`.
A feature's language is ``en`` / ``ja`` when that language holds more than
:data:`LANGUAGE_THRESHOLD` (the study's 0.9) of its evidence, else ``mix``
(:func:`majority_language`).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from typing import Literal

Script = Literal["en", "ja", "neutral"]
Language = Literal["en", "ja", "mix"]

LANGUAGE_THRESHOLD = 0.9  # the study's rule: en / ja when > 0.9 of a feature's evidence
BYTE_PIECE_RE = re.compile(r"<0x([0-9A-Fa-f]{2})>")  # a byte-fallback piece; group 1: the byte
JA_MARKS = "々〆〇〻"  # iteration / closing marks that count as Japanese (U+3005-7, U+303B)
MIDDLE_DOT = "・"  # U+30FB: in the katakana block, but punctuation


# ------------------------------------------------------------------- one test per class
def is_hiragana(ch: str) -> bool:
    """Hiragana block, U+3041–U+309F (ぁ … ゟ, with the voicing marks)."""
    return 0x3041 <= ord(ch) <= 0x309F


def is_katakana(ch: str) -> bool:
    """Katakana block, U+30A0–U+30FF (゠ ァ … ヺ ・ ー ヽ ヾ ヿ)."""
    return 0x30A0 <= ord(ch) <= 0x30FF


def is_katakana_ext(ch: str) -> bool:
    """Katakana phonetic extensions, U+31F0–U+31FF (ㇰ …)."""
    return 0x31F0 <= ord(ch) <= 0x31FF


def is_halfwidth_katakana(ch: str) -> bool:
    """Half-width katakana, U+FF66–U+FF9F (ｦ … ﾟ); NFKC maps them to the katakana block."""
    return 0xFF66 <= ord(ch) <= 0xFF9F


def is_kanji(ch: str) -> bool:
    """CJK unified ideographs, U+4E00–U+9FFF, and extension A, U+3400–U+4DBF."""
    o = ord(ch)
    return 0x4E00 <= o <= 0x9FFF or 0x3400 <= o <= 0x4DBF


def is_kanji_compat(ch: str) -> bool:
    """CJK compatibility ideographs, U+F900–U+FAFF."""
    return 0xF900 <= ord(ch) <= 0xFAFF


def is_kanji_supplementary(ch: str) -> bool:
    """Ideographs outside the BMP (extensions B and later), U+20000–U+2FFFF."""
    return 0x20000 <= ord(ch) <= 0x2FFFF


def is_latin_letter(ch: str) -> bool:
    """A letter of the Latin script, accented ones included (``a``, ``É``, ``ß``)."""
    return unicodedata.category(ch).startswith("L") and unicodedata.name(ch, "").startswith(
        "LATIN"
    )


def is_ascii_letter(ch: str) -> bool:
    """A–Z or a–z."""
    return ch.isascii() and ch.isalpha()


# ------------------------------------------------------------ composites used by callers
def is_japanese_char(ch: str) -> bool:
    """Kana or kanji: the script rule's (and the package's default) test for Japanese.

    Hiragana, katakana (with ``ー``, without the middle dot ``・``), the katakana extensions,
    every kanji block and :data:`JA_MARKS`. Half-width katakana count once NFKC-normalised.
    """
    return (
        is_hiragana(ch)
        or (is_katakana(ch) and ch != MIDDLE_DOT)
        or is_katakana_ext(ch)
        or is_kanji(ch)
        or is_kanji_compat(ch)
        or is_kanji_supplementary(ch)
        or ch in JA_MARKS
    )


def is_japanese_char_norm_study(ch: str) -> bool:
    """The norm study's token-type test: kana (``・`` and half-width included), kanji, 々 〆.

    Applied to raw (not NFKC-normalised) piece text, hence the half-width katakana.
    """
    return (
        is_hiragana(ch)
        or is_katakana(ch)
        or is_halfwidth_katakana(ch)
        or is_kanji(ch)
        or is_kanji_supplementary(ch)
        or ch in JA_MARKS[:2]
    )


def is_kana(ch: str) -> bool:
    """Hiragana or katakana block (U+3041–U+30FF)."""
    return is_hiragana(ch) or is_katakana(ch)


def is_katakana_letter(ch: str) -> bool:
    """A katakana that spells a word: the block without ゠ (U+30A0), ・ (U+30FB), ヿ (U+30FF)."""
    return is_katakana(ch) and ch not in "゠・ヿ"


def in_cjk_span(ch: str) -> bool:
    """U+3041–U+9FFF: hiragana through the CJK ideographs (kana, CJK symbols, kanji).

    A coarse "looks Japanese" test for dictionary look-ups and form classes.
    """
    return 0x3041 <= ord(ch) <= 0x9FFF


def char_script(ch: str) -> Script:
    """``ja`` (:func:`is_japanese_char`), ``en`` (:func:`is_latin_letter`) or ``neutral``."""
    if is_japanese_char(ch):
        return "ja"
    if is_latin_letter(ch):
        return "en"
    return "neutral"


def is_neutral_char(ch: str) -> bool:
    """Neither Japanese nor Latin: digits, punctuation, whitespace, symbols, other scripts."""
    return char_script(ch) == "neutral"


# --------------------------------------------------------------------------- byte pieces
def byte_of_piece(piece: str) -> int | None:
    """The byte value of a byte-fallback piece like ``<0xE3>``, else None (``▁<0xE3>``: None)."""
    m = BYTE_PIECE_RE.fullmatch(piece)
    return int(m.group(1), 16) if m else None


def is_byte_piece(piece: str) -> bool:
    """True when the whole of ``piece`` is one byte-fallback piece."""
    return BYTE_PIECE_RE.fullmatch(piece) is not None


def strip_byte_pieces(text: str) -> str:
    """``text`` with every ``<0xNN>`` piece removed."""
    return BYTE_PIECE_RE.sub("", text)


# ------------------------------------------------------------------ language threshold
def majority_language(counts: Mapping[str, float]) -> Language:
    """``en`` / ``ja`` when it holds > :data:`LANGUAGE_THRESHOLD` of ``counts``, else ``mix``.

    ``counts`` maps ``en`` / ``ja`` (other keys count towards the total) to example counts or
    activation-weighted votes; no evidence at all is ``mix``.
    """
    n = sum(counts.values())
    for lang in ("en", "ja"):
        if n > 0 and counts.get(lang, 0) > LANGUAGE_THRESHOLD * n:
            return lang  # type: ignore[return-value]
    return "mix"
