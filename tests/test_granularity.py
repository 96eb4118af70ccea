"""Granularity classifier, its lexical helpers, the LLM-judge backend and agreement statistics."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest

from llmjp_ckpt.labels import lexical
from llmjp_ckpt.labels.agreement import agreement, cohen_kappa, confusion, recall_per_class
from llmjp_ckpt.labels.evaluate import evaluate, in_fit_part
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
    (["ク", "ツ", "リ", "ニ", "ラン", "シャ", "シ", "ッ", "ヴィ", "スカ"], "semantic"),
    ([" American", " British", " English", " French", " Italian", " German", " Dutch",
      " Spanish", " Greek", " Irish"], "semantic"),
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
    assert RuleBackend().classify(ex)[0] == "token"  # unrelated forms without a model
    vec = {"grid": [1.0, 0.0], "格子": [0.9, 0.1]}
    assert RuleBackend(embed=lambda t: vec.get(t)).classify(ex)[0] == "synonym"
    assert RuleBackend(lexicon={"格子": {"grid", "lattice"}}).classify(ex)[0] == "synonym"


def test_embedder_from_vocab_looks_up_sentencepiece_rows():
    vocab = {"\u2581grid": 0, "格子": 1, "\u2581Tokyo": 2}
    weights = [[1.0, 0.0], [0.8, 0.2], [0.0, 1.0]]
    embed = embedder_from_vocab(vocab, weights)
    assert embed("grid") == [1.0, 0.0] and embed("格子") == [0.8, 0.2]
    assert embed("tokyo") == [0.0, 1.0]  # surface forms are casefolded
    assert embed("absent") is None
    ex = build_examples([" grid"] * 5 + ["格子"] * 5)
    assert RuleBackend(embed=embed).classify(ex)[0] == "synonym"
    ex = build_examples([" grid"] * 5 + [" Tokyo"] * 5)
    assert RuleBackend(embed=embed).classify(ex)[0] == "token"


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
def test_classifier_meets_target_on_peer_file(capsys):
    recs = peer_records()
    params = RuleParams.load()
    allp = evaluate(recs, params)
    held = evaluate([r for r in recs if not in_fit_part(r)], params)
    with capsys.disabled():
        print(f"\npeer file: kappa all {allp.kappa:.3f}, held-out {held.kappa:.3f}; "
              f"largest share gap {100 * allp.max_share_gap():.1f} points")
    assert allp.kappa >= 0.75
    assert held.kappa >= 0.75
    assert allp.max_share_gap() <= 0.07
    syn = LABELS.index("synonym")
    assert sum(row[syn] for row in allp.matrix) >= 2  # it does say 'synonym'
    assert allp.matrix[syn][syn] >= 2  # ... and is right at least twice


def test_peer_stats_spot_checks():
    recs = {(r.checkpoint, r.feature): r for r in peer_records()}
    st = token_stats(recs[(100000, 34)].examples)  # recognized / recognised / recogn
    assert st.cluster >= 0.9 and st.variant >= 0.4
    st = token_stats(recs[(100000, 64)].examples)  # インチ / inch
    assert st.variant >= 0.3
    assert classify(recs[(100000, 64)].examples)[0] == "synonym"
