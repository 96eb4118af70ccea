"""Word-level helpers for the granularity classifier: normal forms, variant keys, transliteration.

All rules are small and explicit so a wrong call can be traced: NFKC + casefold + stripped
``▁``/space (:func:`surface`), British→American spelling and inflection stripping
(:func:`variant_key`), katakana→romaji and a loanword consonant skeleton so that ``ダーク`` and
``dark`` or ``パネル`` and ``panel`` compare equal (:func:`loan_skeleton`).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from pathlib import Path

from llmjp_ckpt import chars

_LATIN_WORD = re.compile(r"^[a-z]+$")


def surface(token: str) -> str:
    """NFKC, casefold, strip whitespace and SentencePiece ``▁``: `` Panel`` → ``panel``."""
    text = unicodedata.normalize("NFKC", token).replace("\u2581", " ")
    return text.strip().casefold()


def is_latin_word(text: str) -> bool:
    """Lower-case ASCII letters only (after :func:`surface`)."""
    return bool(_LATIN_WORD.match(text))


@lru_cache(maxsize=1 << 17)  # asked of every name of every feature's forms
def is_katakana(text: str) -> bool:
    """Katakana letters only (``ー`` included, ``・`` not): a loanword's spelling."""
    return bool(text) and all(chars.is_katakana_letter(c) for c in text)


# British spellings → American, applied to the stem left after inflection stripping.
_BRIT = [
    (re.compile(r"is(ation|ations|er|ers|e|es|ed|ing)?$"), "iz"),
    (re.compile(r"yse$"), "yze"),
    (re.compile(r"our$"), "or"),
    (re.compile(r"tre$"), "ter"),
    (re.compile(r"ogue$"), "og"),
]
# Inflectional and a few derivational suffixes, longest first; the stem keeps ≥ 3 letters.
_SUFFIXES = [
    ("izations", ""), ("ization", ""), ("isations", ""), ("isation", ""),
    ("ities", ""), ("ity", ""), ("ations", ""), ("ation", ""), ("ings", ""), ("ing", ""),
    ("ies", "y"), ("ied", "y"), ("ers", ""), ("er", ""), ("est", ""), ("ed", ""),
    ("es", ""), ("s", ""), ("ly", ""), ("e", ""),
]


@lru_cache(maxsize=65536)
def variant_key(word: str) -> str:
    """A key shared by spelling variants and inflections of one word.

    ``recognised``/``recognized``/``recognize`` → ``recogniz``; ``caps``/``capped``/``cap`` →
    ``cap``; ``colour``/``color`` → ``color``. Non-Latin text is returned as is.
    """
    w = surface(word)
    if not is_latin_word(w) or len(w) <= 3:
        return w
    for suf, rep in _SUFFIXES:
        if w.endswith(suf) and len(w) - len(suf) + len(rep) >= 3:
            w = w[: len(w) - len(suf)] + rep
            break
    if len(w) >= 4 and w[-1] == w[-2] and w[-1] not in "aeiouls":
        w = w[:-1]  # capped → capp → cap
    for pat, rep in _BRIT:
        new = pat.sub(rep, w)
        if new != w and len(new) >= 3:
            w = new
            break
    return w


# --------------------------------------------------------------------------- kana → romaji
_DIGRAPHS = {
    "キャ": "kya", "キュ": "kyu", "キョ": "kyo", "シャ": "sha", "シュ": "shu", "ショ": "sho",
    "チャ": "cha", "チュ": "chu", "チョ": "cho", "ニャ": "nya", "ニュ": "nyu", "ニョ": "nyo",
    "ヒャ": "hya", "ヒュ": "hyu", "ヒョ": "hyo", "ミャ": "mya", "ミュ": "myu", "ミョ": "myo",
    "リャ": "rya", "リュ": "ryu", "リョ": "ryo", "ギャ": "gya", "ギュ": "gyu", "ギョ": "gyo",
    "ジャ": "ja", "ジュ": "ju", "ジョ": "jo", "ビャ": "bya", "ビュ": "byu", "ビョ": "byo",
    "ピャ": "pya", "ピュ": "pyu", "ピョ": "pyo", "ファ": "fa", "フィ": "fi", "フェ": "fe",
    "フォ": "fo", "ティ": "ti", "ディ": "di", "トゥ": "tu", "ドゥ": "du", "ウィ": "wi",
    "ウェ": "we", "ウォ": "wo", "ヴァ": "va", "ヴィ": "vi", "ヴェ": "ve", "ヴォ": "vo",
    "シェ": "she", "ジェ": "je", "チェ": "che", "ツァ": "tsa", "クァ": "kwa", "クォ": "kwo",
}
_MONO = dict(
    zip(
        "アイウエオカキクケコサシスセソタチツテトナニヌネノハヒフヘホマミムメモヤユヨラリルレロワヲン"
        "ガギグゲゴザジズゼゾダヂヅデドバビブベボパピプペポヴァィゥェォャュョヮ",
        [
            "a",
            "i",
            "u",
            "e",
            "o",
            "ka",
            "ki",
            "ku",
            "ke",
            "ko",
            "sa",
            "shi",
            "su",
            "se",
            "so",
            "ta",
            "chi",
            "tsu",
            "te",
            "to",
            "na",
            "ni",
            "nu",
            "ne",
            "no",
            "ha",
            "hi",
            "fu",
            "he",
            "ho",
            "ma",
            "mi",
            "mu",
            "me",
            "mo",
            "ya",
            "yu",
            "yo",
            "ra",
            "ri",
            "ru",
            "re",
            "ro",
            "wa",
            "o",
            "n",
            "ga",
            "gi",
            "gu",
            "ge",
            "go",
            "za",
            "ji",
            "zu",
            "ze",
            "zo",
            "da",
            "ji",
            "zu",
            "de",
            "do",
            "ba",
            "bi",
            "bu",
            "be",
            "bo",
            "pa",
            "pi",
            "pu",
            "pe",
            "po",
            "vu",
            "a",
            "i",
            "u",
            "e",
            "o",
            "ya",
            "yu",
            "yo",
            "wa",
        ],
    )
)


def katakana_to_romaji(text: str) -> str:
    """Hepburn-like romaji of katakana (hiragana is converted to katakana first)."""
    text = "".join(chr(ord(c) + 0x60) if 0x3041 <= ord(c) <= 0x3096 else c for c in text)
    out: list[str] = []
    i = 0
    while i < len(text):
        two = text[i : i + 2]
        if two in _DIGRAPHS:
            out.append(_DIGRAPHS[two])
            i += 2
            continue
        c = text[i]
        if c == "ッ":  # geminate: doubled next consonant
            out.append("")
            i += 1
            continue
        if c == "ー":  # long vowel: repeat last vowel
            out.append(out[-1][-1] if out and out[-1] else "")
            i += 1
            continue
        out.append(_MONO.get(c, ""))
        i += 1
    return "".join(out)


_VOWELS = set("aeiouy")


@lru_cache(maxsize=65536)  # called for every katakana × Latin pair of a feature
def loan_skeleton(text: str) -> str:
    """A consonant skeleton comparable across an English word and its katakana loan.

    Katakana goes to romaji; then ``l``→``r``, ``v``→``b``, ``c``/``q``/``x``→``k``,
    ``ph``→``f``, ``th``→``s``, soft ``c``→``s``; an ``r`` before a consonant or at the end
    is dropped first (English ``dark`` ~ ``ダーク`` daaku), vowels, ``h`` and ``w`` are
    dropped and repeats collapsed.
    """
    w = katakana_to_romaji(text) if is_katakana(text) else surface(text)
    w = w.replace("ph", "f").replace("th", "s").replace("ck", "k").replace("tch", "ch")
    w = w.replace("tsu", "t").replace("chi", "ch").replace("shi", "sh").replace("fu", "f")
    w = w.replace("ch", "C").replace("sh", "S").replace("j", "J")
    w = re.sub(r"r(?=[^aeiouy]|$)", "", w)  # before l→r: a katakana ル keeps its r
    w = re.sub(r"c(?=[eiy])", "s", w)
    w = re.sub(r"n(?=[pbm])", "m", w)  # ン before p/b/m sounds m
    w = w.replace("l", "r").replace("v", "b").replace("c", "k").replace("q", "k").replace("x", "ks")
    w = "".join(ch for ch in w if ch not in _VOWELS and ch not in "hw")
    return re.sub(r"(.)\1+", r"\1", w)


def loan_match(a: str, b: str) -> bool:
    """True when one of ``a``/``b`` is katakana, the other a Latin word, and they sound alike."""
    (ka_kind, ska), (kb_kind, skb) = loan_form(a), loan_form(b)
    if ka_kind == "k" and kb_kind == "l":
        return skeletons_match(ska, skb)
    if ka_kind == "l" and kb_kind == "k":
        return skeletons_match(skb, ska)
    return False


@lru_cache(maxsize=1 << 17)  # a form meets every katakana or Latin form of each feature it is in
def loan_form(text: str) -> tuple[str, str]:
    """``("k", skeleton)`` for katakana of ≥ 2 letters, ``("l", skeleton)`` for a Latin word of
    ≥ 3 letters (after :func:`surface`), else ``("", "")``: :func:`loan_match`'s view of a form."""
    s = surface(text)
    if is_katakana(s):
        return ("k", loan_skeleton(s)) if len(s) >= 2 else ("", "")
    if is_latin_word(s):
        return ("l", loan_skeleton(s)) if len(s) >= 3 else ("", "")
    return ("", "")


@lru_cache(maxsize=1 << 18)
def skeletons_match(ka: str, la: str) -> bool:
    """A katakana loan's skeleton ``ka`` sounds like a Latin word's ``la`` (:func:`loan_match`)."""
    if len(la) < 2:
        return False
    if ka == la or (len(ka) >= 3 and la.startswith(ka)):  # clipped: テレビ ~ television
        return True
    close = (len(la) - 1) // 4
    # the edit distance is at least the length difference: no need to compute it past that
    return abs(len(ka) - len(la)) <= close and _edit_distance(ka, la) <= close


def _edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def is_byte_piece(token: str) -> bool:
    """The token, stripped of whitespace, is one byte-fallback piece ``<0xNN>``."""
    return chars.is_byte_piece(token.strip())


def load_lexicon(path: str | Path) -> dict[str, set[str]]:
    """Read a synonym/translation lexicon: one set per line, words separated by tabs.

    ``格子<TAB>grid<TAB>lattice`` makes the three mutually related. Words are compared in
    :func:`surface` form; ``#`` starts a comment line. Use for the granularity classifier's
    ``lexicon`` hook (e.g. pairs exported from JMdict).
    """
    from llmjp_ckpt.errors import UserError

    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read lexicon: {exc}") from None
    out: dict[str, set[str]] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        words = {surface(w) for w in line.split("\t") if surface(w)}
        if len(words) < 2:
            raise UserError(f"{path}:{n}: expected two or more tab-separated words, got {line!r}")
        for w in words:
            out.setdefault(w, set()).update(words - {w})
    return out
