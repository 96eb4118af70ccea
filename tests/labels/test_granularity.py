"""Granularity classifier, its lexical helpers, the LLM-judge backend and agreement statistics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmjp_ckpt.labels import dictionary, lexical
from llmjp_ckpt.labels.agreement import agreement, cohen_kappa, confusion, recall_per_class
from llmjp_ckpt.labels.evaluate import GRID, evaluate, in_fit_part
from llmjp_ckpt.labels.granularity import (
    LABELS,
    PARAMS_FILE,
    LLMJudgeBackend,
    LLMJudgeConfig,
    RuleBackend,
    RuleParams,
    classify,
    embedder_from_vocab,
    parse_judge_answer,
    token_stats,
)
from tests.labels_builders import build_examples, peer_records, win


# --------------------------------------------------------------------------- lexical rules
@pytest.mark.parametrize("a,b", [
    ("recognised", "recognized"), ("recognize", " recognized"), ("colour", "Colors"),
    (" caps", "capped"), ("studies", "study"), (" Panel", "panels"),
])
def test_variant_key_joins_spelling_variants_and_inflections(a, b):
    assert lexical.variant_key(a) == lexical.variant_key(b)


@pytest.mark.parametrize("a,b", [("cap", "cat"), ("book", "album"), ("women", "woman"),
                                 ("national", "nation")])
def test_variant_key_keeps_different_words_apart(a, b):
    assert lexical.variant_key(a) != lexical.variant_key(b)


@pytest.mark.parametrize("kata,latin", [
    ("ダーク", "dark"), ("インチ", " inch"), ("パネル", "panel"), ("コンピューター", "computer"),
    ("ホテル", "Hotel"), ("ドラゴン", "dragon"), ("テレビ", "television"),
])
def test_loanword_transliteration_matches(kata, latin):
    assert lexical.loan_match(kata, latin)
    assert lexical.loan_match(latin, kata)


@pytest.mark.parametrize("a,b", [
    ("パネル", "pencil"), ("ダーク", "light"), ("インチ", "inchworm"), ("本名", "name"),
    ("dark", "dork"),  # two Latin words are never a loan pair
])
def test_loanword_transliteration_rejects(a, b):
    assert not lexical.loan_match(a, b)


def test_katakana_to_romaji():
    assert lexical.katakana_to_romaji("コンピューター") == "konpyuutaa"
    assert lexical.katakana_to_romaji("ぱねる") == "paneru"  # hiragana too


# ------------------------------------------------------------------------- classification
@pytest.mark.parametrize("max_tokens,want", [
    ([" Tokyo"] * 10, "token"),
    ([" low"] * 6 + [" Low"] * 4, "token"),  # case only: one token
    ([" 石田"] * 6 + [" 大塚"] * 4, "token"),  # two unrelated words: polysemantic token
    ([" recognized"] * 5 + [" recognised"] * 4 + [" recognize"], "synonym"),
    (["ダーク"] * 5 + [" dark"] * 5, "synonym"),
    ([" caps"] * 5 + ["capped"] * 3 + [" cap"] * 2, "synonym"),
    # semantic: one kind of word whose forms recur (each twice; sem_distinct_max)
    (["ク", "ツ", "リ", "ニ", "ラン", "シャ", "シ", "ッ", "ヴィ", "スカ"] * 2, "semantic"),
    ([" American", " British", " English", " French", " Italian", " German", " Dutch",
      " Spanish", " Greek", " Irish"] * 2, "semantic"),
    ([" the", "の", "<0x0A>", " 岡山市", "do", "B", "異", " An", "。", " of"], "uninterpretable"),
])
def test_classify_synthetic_features(max_tokens, want):
    label, conf = classify(build_examples(max_tokens))
    assert label == want
    assert 0.5 <= conf <= 1.0


def test_confidence_grows_with_evidence():
    strong = classify(build_examples([" Tokyo"] * 10))
    weak = classify(build_examples([" Tokyo"] * 8 + [" Osaka", " Kyoto"]))
    assert strong[0] == weak[0] == "token"
    assert strong[1] > weak[1]


def test_bad_input_is_handled_neutrally():
    assert classify([]) == ("uninterpretable", 1.0)
    assert classify([[]]) == ("uninterpretable", 1.0)
    # byte pieces, control characters and HTML as max tokens: labelled, no crash
    assert classify(build_examples(["<0xE3>"] * 10))[0] == "token"
    assert classify(build_examples(["\x1b[2J"] * 10))[0] == "token"
    label, _ = classify(build_examples(["<script>", "</b>", "&amp;", "\x00", "<0x0A>",
                                        "\u202e", "<0xFF>", "<!--", "\t", "<i>"]))
    assert label == "uninterpretable"


def test_embedding_and_lexicon_hooks_find_translations():
    ex = build_examples([" grid"] * 5 + ["格子"] * 5)
    # unrelated forms without a model or dictionary
    assert RuleBackend(use_dictionary=False).classify(ex)[0] == "token"
    vec = {"grid": [1.0, 0.0], "格子": [0.9, 0.1]}
    assert RuleBackend(embed=lambda t: vec.get(t)).classify(ex)[0] == "synonym"
    assert RuleBackend(lexicon={"格子": {"grid", "lattice"}}, use_dictionary=False
                       ).classify(ex)[0] == "synonym"


def test_embedder_from_vocab_looks_up_sentencepiece_rows():
    vocab = {"\u2581grid": 0, "格子": 1, "\u2581Tokyo": 2}
    weights = [[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]]
    embed = embedder_from_vocab(vocab, weights)
    assert list(embed("grid")) == [1.0, 0.0] and list(embed("格子")) == pytest.approx([0.8, 0.2])
    assert list(embed("tokyo")) == [0.0, 1.0]  # surface forms are casefolded
    assert embed("absent") is None
    ex = build_examples([" grid"] * 5 + ["格子"] * 5)
    assert RuleBackend(embed=embed).classify(ex)[0] == "synonym"
    ex = build_examples([" grid"] * 5 + [" Tokyo"] * 5)
    assert RuleBackend(embed=embed, use_dictionary=False).classify(ex)[0] == "token"


def test_params_file_is_json_and_complete():
    data = json.loads(PARAMS_FILE.read_text(encoding="utf-8"))
    assert set(data["params"]) == set(RuleParams.__dataclass_fields__)
    assert RuleParams.load() == RuleParams(**data["params"])


def test_params_unknown_field_is_an_error(tmp_path):
    p = tmp_path / "p.json"
    p.write_text(json.dumps({"params": {"token_p1": 0.5, "bogus": 1}}))
    with pytest.raises(ValueError, match="bogus"):
        RuleParams.load(p)


# ---------------------------------------------------------------------------- LLM judge
def test_llm_judge_with_mocked_client():
    seen = {}

    def create(**kw):
        seen.update(kw)
        return SimpleNamespace(choices=[SimpleNamespace(
            message=SimpleNamespace(content='Sure. {"label": "synonym", "confidence": 0.8}'))])

    client = SimpleNamespace(chat=SimpleNamespace(completions=SimpleNamespace(create=create)))
    judge = LLMJudgeBackend(LLMJudgeConfig(model="m", max_examples=2, context=1), client=client)
    ex = [win(" a", 0, " dark", 10, " room", 0, " x", 0)] * 3
    assert classify(ex, backend=judge) == ("synonym", 0.8)
    prompt = seen["messages"][0]["content"]
    assert seen["model"] == "m"
    assert prompt.count("[[ dark]]") == 2  # max_examples
    assert " x" not in prompt.split("Examples:")[1]  # context 1


def test_parse_judge_answer_rejects_junk():
    assert parse_judge_answer("no idea") == ("uninterpretable", 0.0)
    assert parse_judge_answer('{"label": "banana"}') == ("uninterpretable", 0.0)
    assert parse_judge_answer('{"label": "token", "confidence": 7}') == ("token", 1.0)
    with pytest.raises(ValueError):
        LLMJudgeConfig(max_examples=0)


# ---------------------------------------------------------------------------- agreement
def test_kappa_on_hand_computed_case():
    gold = ["a", "a", "b", "b"]
    pred = ["a", "b", "b", "b"]
    # p_o = 3/4; p_e = 1/2 * 1/4 + 1/2 * 3/4 = 1/2; kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert cohen_kappa(gold, pred) == pytest.approx(0.5)
    assert confusion(gold, pred, ["a", "b"]) == [[1, 1], [0, 2]]
    assert recall_per_class(gold, pred, ["a", "b"]) == {"a": 0.5, "b": 1.0}
    assert cohen_kappa(gold, gold) == 1.0
    assert cohen_kappa(["a", "b"], ["b", "a"]) == pytest.approx(-1.0)


def test_agreement_shares_by_group():
    a = agreement(["token", "token", "semantic", "token"], ["token", "semantic", "semantic", "token"],
                  LABELS, [1, 1, 2, 2])
    assert a.shares_gold[1]["token"] == 1.0 and a.shares_pred[1]["token"] == 0.5
    assert a.max_share_gap() == pytest.approx(0.5)
    assert "kappa" in a.format()
    with pytest.raises(ValueError):
        confusion(["token"], ["bogus"], LABELS)


# ------------------------------------------------------------- the authors' labels (shared)
@pytest.mark.parametrize("with_dictionary", [True, False])
def test_classifier_meets_target_on_peer_file(capsys, with_dictionary):
    recs = peer_records()
    dic = None
    if with_dictionary:
        dic = dictionary.default_dictionary()
        if dic is None:
            pytest.skip("jamdict-data not installed")
    params = RuleParams.load()
    allp = evaluate(recs, params, dic)
    held = evaluate([r for r in recs if not in_fit_part(r)], params, dic)
    with capsys.disabled():
        print(f"\npeer file (dictionary {'on' if dic else 'off'}): kappa all {allp.kappa:.3f}, "
              f"held-out {held.kappa:.3f}; largest share gap {100 * allp.max_share_gap():.1f} "
              f"points")
    assert allp.kappa >= 0.75
    assert held.kappa >= 0.75
    assert allp.max_share_gap() <= 0.07
    syn = LABELS.index("synonym")
    assert sum(row[syn] for row in allp.matrix) >= 2  # it does say 'synonym'
    assert allp.matrix[syn][syn] >= 2  # ... and is right at least twice
    if dic is not None:  # the dictionary's gain: in/at/on and ardent/fervent/strongly too
        assert allp.matrix[syn][syn] >= 4


def test_peer_stats_spot_checks():
    recs = {(r.checkpoint, r.feature): r for r in peer_records()}
    st = token_stats(recs[(100000, 34)].examples)  # recognized / recognised / recogn
    assert st.cluster >= 0.9 and st.variant >= 0.4
    st = token_stats(recs[(100000, 64)].examples)  # インチ / inch
    assert st.variant >= 0.3
    assert classify(recs[(100000, 64)].examples)[0] == "synonym"


# ------------------------------------------------------------------- bilingual dictionary
class FakeDictionary:
    """Related pairs given by hand (what JMdict would say), for tests without the package."""

    def __init__(self, *pairs):
        self.pairs = {frozenset(lexical.surface(x) for x in p) for p in pairs}

    def related(self, a, b):
        return frozenset((lexical.surface(a), lexical.surface(b))) in self.pairs


def test_dictionary_hook_relates_translations_and_function_word_sets():
    def rb(d):
        return RuleBackend(dictionary=d, use_dictionary=False)

    # a translation pair: two unrelated forms without the dictionary, one word with it
    ex = build_examples([" grid"] * 5 + ["格子"] * 5)
    assert rb(FakeDictionary(("grid", "格子"))).classify(ex)[0] == "synonym"
    # a dominant form with a few same-meaning words: synonym at a lower variant share than
    # form variants need (meaning vs spelling)
    ex = build_examples([" in"] * 17 + [" at"] * 2 + [" on"])
    assert RuleBackend(use_dictionary=False).classify(ex)[0] == "token"
    assert rb(FakeDictionary(("in", "at"), ("in", "on"))).classify(ex)[0] == "synonym"
    ex = build_examples([" woman"] * 18 + [" women"] * 2)  # a form variant at 10 %: token
    assert RuleBackend(use_dictionary=False).classify(ex)[0] == "token"


def test_dictionary_relations_do_not_chain():
    # a ~ b and b ~ c, but a and c unrelated: the star around b covers b's neighbours only
    ex = build_examples([" into"] * 4 + [" through"] * 3 + [" across"] * 3)
    d = FakeDictionary(("into", "through"), ("through", "across"))
    st = token_stats(ex, dictionary=d)
    assert st.cluster == pytest.approx(1.0)  # through's star: all three
    d = FakeDictionary(("into", "through"), ("across", "over"))
    st = token_stats(build_examples([" into"] * 4 + [" through"] * 3 + [" across"] * 3), dictionary=d)
    assert st.cluster == pytest.approx(0.7) and st.form_variant == 0.0
    d = FakeDictionary(("a1", "b1"), ("b1", "c1"))
    ex = build_examples([" a1"] * 4 + [" c1"] * 4 + [" b1"] * 2)
    assert token_stats(ex, dictionary=d).cluster == pytest.approx(1.0)
    ex = build_examples([" a1"] * 4 + [" c1"] * 4 + [" x1"] * 2)  # no b1: a1 and c1 stay apart
    assert token_stats(ex, dictionary=d).cluster == pytest.approx(0.4)


def test_graceful_fallback_without_jamdict_data(monkeypatch, caplog):
    monkeypatch.setattr(dictionary, "db_path", lambda: None)
    monkeypatch.setattr(dictionary, "_DEFAULT", None)
    monkeypatch.setattr(dictionary, "_LOOKED", False)
    with caplog.at_level("WARNING", logger="llmjp_ckpt.labels.dictionary"):
        assert dictionary.default_dictionary() is None
    assert "jamdict-data is not installed" in caplog.text
    ex = build_examples([" grid"] * 5 + ["格子"] * 5)
    assert RuleBackend().classify(ex)[0] == "token"  # runs, on form rules only
    assert RuleBackend().classify(build_examples(["ダーク"] * 5 + [" dark"] * 5))[0] == "synonym"


def test_synonym_thresholds_are_not_fitted():
    assert not {"syn_variant", "syn_meaning", "syn_cluster"} & set(GRID)


@pytest.fixture(scope="module")
def jmdict():
    d = dictionary.default_dictionary()
    if d is None:
        pytest.skip("jamdict-data not installed")
    return d


@pytest.mark.parametrize("a,b", [
    ("格子", "grid"), ("grid", "lattice"), (" in", " at"), ("at", "on"), ("パネル", "panel"),
    ("host", "presenter"), ("albums", "collection"), ("女性", "woman"),
])
def test_jmdict_relates_translations_and_shared_senses(jmdict, a, b):
    assert jmdict.related(a, b) and jmdict.related(b, a)


@pytest.mark.parametrize("a,b", [
    ("格子", "panel"), ("dark", "light"), ("of", "the"), ("本名", "name"), ("に", "two"),
    ("english", "french"), ("Tokyo", "東京都"), ("<0x0A>", "\n"),
])
def test_jmdict_keeps_unrelated_words_apart(jmdict, a, b):
    assert not jmdict.related(a, b)


def test_jmdict_translation_feature_is_synonym(jmdict):
    ex = build_examples([" grid"] * 5 + ["格子"] * 3 + [" lattice"] * 2)
    assert RuleBackend(dictionary=jmdict).classify(ex)[0] == "synonym"


def test_embedding_relation_is_cosine_at_or_over_the_threshold():
    import numpy as np
    import torch

    vocab = {"\u2581grid": 0, "\u0120lattice": 1, "格子": 2, "\u2581zero": 3, "\u2581far": 4}
    w = np.array([[1.0, 0.0], [0.6, 0.8], [0.6, 0.8], [0.0, 0.0], [-1.0, 0.0]], dtype=np.float32)
    for weights in (w, torch.from_numpy(w)):  # NumPy rows or tensor rows (W_E)
        embed = embedder_from_vocab(vocab, weights)
        assert embed("lattice") == pytest.approx([0.6, 0.8])  # a byte-level BPE piece (Ġ)
        ex = build_examples([" grid"] * 5 + [" lattice"] * 5)
        at = RuleBackend(embed=embed, embed_threshold=0.6, use_dictionary=False)
        over = RuleBackend(embed=embed, embed_threshold=0.61, use_dictionary=False)
        assert at.classify(ex)[0] == "synonym" and over.classify(ex)[0] == "token"  # cos 0.6
        # a zero row and an opposite row relate to nothing
        for other in (" zero", " far"):
            ex = build_examples([" grid"] * 5 + [other] * 5)
            assert RuleBackend(embed=embed, embed_threshold=-0.5, use_dictionary=False
                               ).classify(ex)[0] == "token"
