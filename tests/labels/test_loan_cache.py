"""The cached loanword rule (``lexical.loan_form`` + ``skeletons_match``) equals the rule spelled out."""

from __future__ import annotations

import itertools

from llmjp_ckpt.labels import lexical

WORDS = ["ダーク", "dark", "パネル", "panel", "テレビ", "television", "テ", "tv", "カラー", "colour", "color",
         "コンピューター", "computer", "サーバー", "server", "servers", "ゲーム", "game", "games", "グリッド",
         "grid", " Panel", "ＰＡＮＥＬ", "ﾀﾞｰｸ", "東京", "", "ab", "abc", "マ", "マン", "man", "moon"]


def _reference(a: str, b: str) -> bool:
    """``loan_match`` as first written: every step, the edit distance always computed."""
    sa, sb = lexical.surface(a), lexical.surface(b)
    if lexical.is_katakana(sa) and lexical.is_latin_word(sb):
        kata, lat = sa, sb
    elif lexical.is_katakana(sb) and lexical.is_latin_word(sa):
        kata, lat = sb, sa
    else:
        return False
    if len(lat) < 3 or len(kata) < 2:
        return False
    ka, la = lexical.loan_skeleton(kata), lexical.loan_skeleton(lat)
    if len(la) < 2:
        return False
    close = lexical._edit_distance(ka, la) <= (len(la) - 1) // 4
    return ka == la or close or (len(ka) >= 3 and la.startswith(ka))


def test_cached_loan_match_equals_the_rule():
    pairs = list(itertools.product(WORDS, repeat=2))
    got = [lexical.loan_match(a, b) for a, b in pairs]
    assert got == [_reference(a, b) for a, b in pairs]
    assert any(got) and not all(got)  # both outcomes exercised
    assert lexical.loan_match("ダーク", "dark") and lexical.loan_match("television", "テレビ")


def test_loan_form_kinds():
    assert lexical.loan_form("ダーク")[0] == "k"
    assert lexical.loan_form(" Panel") == ("l", lexical.loan_skeleton("panel"))
    assert lexical.loan_form("テ") == ("", "")  # one katakana: too short
    assert lexical.loan_form("tv") == ("", "")  # two letters: too short
    assert lexical.loan_form("東京") == ("", "")
