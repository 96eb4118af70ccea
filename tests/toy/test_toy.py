"""The toy world: generator, corpus layout, planted truth, tokenizer, checkpoints, CLI errors."""

from __future__ import annotations

import gzip
import json
import re
from pathlib import Path

import pytest
import torch

from llmjp_ckpt.cli import main
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.toy import ToyConfig, make_toy
from llmjp_ckpt.toy.corpus import CORPUS_FILES, FRAMES, CorpusConfig, Generator
from llmjp_ckpt.toy.lexicon import CONCEPTS, all_forms
from llmjp_ckpt.toy.train import LMTrainConfig, ModelShape


def tiny_config(**overrides) -> ToyConfig:
    """A world small enough to build twice in a test (seconds)."""
    kw = {
        "corpus": CorpusConfig(n_docs=60),
        "shape": ModelShape(hidden=32, intermediate=64, layers=2, heads=2, max_positions=128),
        "train": LMTrainConfig(steps=(1, 2, 4), batch=4, seq_len=32),
        "signals": False,
    }
    kw.update(overrides)
    return ToyConfig(**kw)


def corpus_texts(toy: Path, lang: str) -> list[str]:
    with gzip.open(toy / "corpus" / CORPUS_FILES[lang], "rt", encoding="utf-8") as fh:
        return [json.loads(line)["text"] for line in fh]


# --- generator and lexicon ---------------------------------------------------------------


def test_generator_is_deterministic_and_seeded():
    a = [d.text for d in Generator(3).documents(40)]
    b = [d.text for d in Generator(3).documents(40)]
    c = [d.text for d in Generator(4).documents(40)]
    assert a == b
    assert a != c
    kinds = {d.kind for d in Generator(3).documents(200)}
    assert kinds == {"mono", "parallel", "gloss", "switch"}


def test_forms_never_hide_inside_templates_or_other_forms():
    literals = [re.sub(r"\{[ab]\}", "|", t) for f in FRAMES for t in (f.ja, f.en)]
    ja = [f for lang, f, _ in all_forms() if lang == "ja"]
    for form in ja:
        assert not any(form in lit for lit in literals), form
        assert not any(form != other and form in other for other in ja), form
    en_words = {w.strip(".") for f in FRAMES for w in f.en.split()}
    assert not {c.en for c in CONCEPTS} & en_words


def test_tags_follow_mentions_in_both_languages_and_belong_to_neither():
    from llmjp_ckpt.chars import char_script
    from llmjp_ckpt.toy.corpus import TAG
    from llmjp_ckpt.toy.lexicon import TAG_OF

    assert len(set(TAG_OF.values())) == len(CONCEPTS)
    assert all(len(t) == 1 and char_script(t) == "neutral" for t in TAG_OF.values())
    mentions = tags = 0
    after: dict[str, set[str]] = {}  # concept -> languages of the forms its tag followed
    for d in Generator(0, CorpusConfig(n_docs=300, tag_share=0.2)).documents():
        last = None  # the last planted form: (concept, language)
        for text, cid, lang in d.segments:
            if lang == TAG:
                tags += 1
                assert last is not None and last[0] == cid and text == TAG_OF[cid]
                after.setdefault(cid, set()).add(last[1])
            elif cid:
                mentions += 1
                last = (cid, lang)
    assert 0.1 < tags / mentions < 0.25  # a glossed mention has two forms and one draw
    assert all(after.get(c.id) == {"ja", "en"} for c in CONCEPTS)
    off = "".join(d.text for d in Generator(0, CorpusConfig(n_docs=100, tag_share=0.0)).documents())
    assert not set(off) & set(TAG_OF.values())


# --- the quick toy world -------------------------------------------------------------------


def test_corpus_layout_is_llm_jp_v3_and_readable_by_the_loader(toy_dir):
    from llmjp_ckpt.data.config import DataConfig
    from llmjp_ckpt.data.corpus import Counts, iter_documents

    for rel in CORPUS_FILES.values():
        path = toy_dir / "corpus" / rel
        assert path.name == "train_0.jsonl.gz"
        raw = gzip.decompress(path.read_bytes()).decode("utf-8").splitlines()
        assert raw and all(list(json.loads(line)) == ["text"] for line in raw)
    cfg = DataConfig(tokenizer=str(toy_dir / "tokenizer"), corpus_root=str(toy_dir / "corpus"))
    ja = [d.text for d in iter_documents(cfg, "ja", Counts())]
    en = [d.text for d in iter_documents(cfg, "en", Counts())]
    assert ja == corpus_texts(toy_dir, "ja") and en == corpus_texts(toy_dir, "en")
    assert all(re.search(r"[\u3040-\u30ff\u4e00-\u9fff]", t) for t in ja)
    assert all(t.startswith(("The", "I", "In", "My", "Next")) for t in en)
    assert not any("  " in t or t != t.strip() or " 。" in t or " ." in t for t in ja + en)
    # a share of documents holds both languages
    mixed = [t for t in ja + en if re.search(r"[A-Za-z]", t) and re.search(r"[\u3040-\u9fff]", t)]
    assert 0.1 < len(mixed) / len(ja + en) < 0.6


def test_every_planted_form_occurs_and_tokenises_as_recorded(toy_dir):
    import sentencepiece as spm

    truth = json.loads((toy_dir / "concepts.json").read_text(encoding="utf-8"))
    sp = spm.SentencePieceProcessor(model_file=str(toy_dir / "tokenizer" / "tokenizer.model"))
    texts = corpus_texts(toy_dir, "ja") + corpus_texts(toy_dir, "en")
    assert {(f["language"], f["form"]) for f in truth["forms"]} == {(lang, f) for lang, f, _ in all_forms()}
    checked = 0
    for entry in truth["forms"]:
        form = entry["form"]
        pattern = re.escape(form) if entry["language"] == "ja" else rf"(?<![A-Za-z]){re.escape(form)}(?![A-Za-z])"
        hits = [(i, m.start()) for i, t in enumerate(texts) for m in re.finditer(pattern, t)]
        assert len(hits) == entry["count"] > 0, form
        assert [sp.piece_to_id(p) for p in entry["pieces"]] == entry["ids"]
        for i, start in hits[:30]:
            text = texts[i]
            pieces = sp.encode(text, out_type=str)
            assert not any(p.startswith("<0x") for p in pieces)
            norm = "▁" + text.replace(" ", "▁")  # what the pieces spell (dummy prefix)
            assert "".join(pieces) == norm
            bounds = [0]
            for p in pieces:
                bounds.append(bounds[-1] + len(p))
            after_space = norm[start] == "▁"  # the character before the form (or the prefix)
            lo, hi = (start, start + 1 + len(form)) if after_space else (start + 1, start + 1 + len(form))
            assert lo in bounds and hi in bounds, (form, text)
            got = pieces[bounds.index(lo): bounds.index(hi)]
            assert got == (entry["pieces"] if after_space else entry["pieces_attached"]), (form, text)
            checked += 1
    assert checked > 500


def test_a_tag_is_one_piece_the_same_after_either_language(toy_dir):
    import sentencepiece as spm

    from llmjp_ckpt.toy.lexicon import TAG_OF

    truth = json.loads((toy_dir / "concepts.json").read_text(encoding="utf-8"))
    assert {c["id"]: c["tag"] for c in truth["concepts"]} == TAG_OF
    sp = spm.SentencePieceProcessor(model_file=str(toy_dir / "tokenizer" / "tokenizer.model"))
    for c in CONCEPTS:
        tag = sp.piece_to_id(TAG_OF[c.id])
        assert tag != sp.unk_id(), c.id
        ja, en = sp.encode(f"{c.ja[0]}{TAG_OF[c.id]}は"), sp.encode(f"The {c.en}{TAG_OF[c.id]} is")
        assert tag in ja and tag in en, c.id


def test_documents_of_both_languages_hold_a_study_window(toy_dir):
    """The study keeps documents of at least BOS + 64 tokens: nearly every toy document has one."""
    import statistics

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(toy_dir / "tokenizer" / "tokenizer.model"))
    for lang in ("ja", "en"):
        lengths = [1 + len(sp.encode(t)) for t in corpus_texts(toy_dir, lang)]
        assert sum(n >= 65 for n in lengths) >= 0.9 * len(lengths), (lang, sorted(lengths)[: len(lengths) // 10 + 1])
        assert 80 <= statistics.median(lengths) <= 200, (lang, statistics.median(lengths))


def test_tokenizer_is_llm_jp_style_and_hf_matches_sentencepiece(toy_dir):
    import sentencepiece as spm
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(toy_dir / "tokenizer"))
    sp = spm.SentencePieceProcessor(model_file=str(toy_dir / "tokenizer" / "tokenizer.model"))
    assert [sp.id_to_piece(i) for i in range(4)] == ["<unk>", "<s>", "</s>", "<pad>"]
    assert tok.bos_token_id == 1 and tok.pad_token_id == 3
    cfg = json.loads((toy_dir / "tokenizer" / "tokenizer_config.json").read_text())
    assert cfg["add_bos_token"] is True
    texts = corpus_texts(toy_dir, "ja")[:100] + corpus_texts(toy_dir, "en")[:100] + ["京都 ヤギ 😀"]
    for text in texts:
        assert tok(text)["input_ids"] == [1] + sp.encode(text), text
    assert "<0xF0>" in tok.tokenize("😀")  # byte fallback, never <unk>
    info = json.loads((toy_dir / "toy.json").read_text())
    assert info["tokenizer_size"] == len(tok) < info["model_vocab_size"]
    assert info["model_vocab_size"] % 128 == 0


def test_checkpoints_training_log_and_layer(toy_dir):
    from transformers import LlamaConfig

    info = json.loads((toy_dir / "toy.json").read_text())
    rows = json.loads((toy_dir / "train_log.json").read_text())["checkpoints"]
    steps = [r["step"] for r in rows]
    assert len(steps) >= 4 and steps == sorted(set(steps)) == info["steps"]
    assert rows[-1]["loss"] < 0.5 * rows[0]["loss"]
    assert info["layer"] == info["n_layers"] // 2
    assert info["hook"] == f"blocks.{info['layer'] - 1}.hook_resid_post"
    found = sorted(p.name for p in (toy_dir / "checkpoints").iterdir())
    assert found == [f"iter_{s:07d}" for s in steps]
    for name in found:
        files = {p.name for p in (toy_dir / "checkpoints" / name).iterdir()}
        assert {
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer.model",
            "tokenizer_config.json",
        } <= files
        assert not any(f.endswith((".bin", ".pt")) for f in files)
    cfg = LlamaConfig.from_pretrained(str(toy_dir / "checkpoints" / found[-1]))
    assert cfg.architectures == ["LlamaForCausalLM"]
    assert not cfg.tie_word_embeddings and cfg.hidden_act == "silu" and cfg.rope_theta == 10000.0
    assert not cfg.attention_bias and not cfg.mlp_bias and cfg.vocab_size == info["model_vocab_size"]
    for row in rows:
        sig = row["signals"]
        assert 0 <= sig["parallel_acc"] <= 1 and 0 < sig["chance"] < 0.2
        assert -1 <= sig["cross_gap"] <= 2 and -1 <= sig["variant_gap"] <= 2


def test_checkpoints_load_through_the_adapter_with_hf_logits(toy_dir):
    pytest.importorskip("llmjp_ckpt.models.adapter")
    from transformers import AutoTokenizer, LlamaForCausalLM

    from llmjp_ckpt.models.adapter import load_model

    path = toy_dir / "checkpoints" / max(p.name for p in (toy_dir / "checkpoints").iterdir())
    tl = load_model(path)
    hf = LlamaForCausalLM.from_pretrained(str(path)).eval()
    ids = AutoTokenizer.from_pretrained(str(path))(
        "猫 (cat) は祇園に住んでいる。 The cat lives in Gion.", return_tensors="pt"
    ).input_ids
    with torch.no_grad():
        diff = (tl(ids) - hf(ids).logits).abs().max().item()
    assert diff <= 1e-4
    assert tl.cfg.n_layers == json.loads((toy_dir / "toy.json").read_text())["n_layers"]
    # the registered name routes to the same folder through TransformerLens' checkpoint seam
    step = int(path.name.removeprefix("iter_"))
    named = load_model("llmjp-toy", step, checkpoint_root=toy_dir / "checkpoints")
    with torch.no_grad():
        assert torch.equal(named(ids), tl(ids))


# --- determinism and errors -----------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != "toy.json"}


def test_same_seed_gives_byte_identical_files(tmp_path):
    make_toy(tmp_path / "a", seed=5, config=tiny_config())
    make_toy(tmp_path / "b", seed=5, config=tiny_config())
    make_toy(tmp_path / "c", seed=6, config=tiny_config())
    a, b, c = (_tree(tmp_path / x) for x in "abc")
    assert any(k.endswith("model.safetensors") for k in a)
    assert a == b
    weights = "checkpoints/iter_0000004/model.safetensors"
    assert a[weights] != c[weights]
    # a rerun with another schedule replaces the checkpoints instead of mixing them
    make_toy(tmp_path / "a", seed=5, config=tiny_config(train=LMTrainConfig(steps=(1, 3), batch=4, seq_len=32)))
    assert sorted(p.name for p in (tmp_path / "a" / "checkpoints").iterdir()) == ["iter_0000001", "iter_0000003"]
    assert a["corpus/ja/ja_wiki/train_0.jsonl.gz"] != c["corpus/ja/ja_wiki/train_0.jsonl.gz"]


@pytest.mark.parametrize("steps", [(10, 10, 30), (30, 10), (0, 5)])
def test_bad_step_schedule_is_a_user_error(steps):
    with pytest.raises(UserError, match="steps"):
        ToyConfig(train=LMTrainConfig(steps=steps))


@pytest.mark.parametrize("seed", ["abc", "1.5", -1, True, None])
def test_bad_seed_is_a_user_error(tmp_path, seed):
    with pytest.raises(UserError, match="seed"):
        make_toy(tmp_path / "x", seed=seed, config=tiny_config())
    assert not (tmp_path / "x").exists()


def test_cli_bad_options_exit_2_with_one_line(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    cases = [
        (["toy", "--out", str(blocker / "sub"), "--quick"], "--out"),
        (["toy", "--out", str(blocker), "--quick"], "--out"),
        (["toy", "--out", str(tmp_path / "o"), "--seed", "x1"], "seed"),
        (["toy", "--out", str(tmp_path / "o"), "--quick", "--steps", "10,30,20,40"], "steps"),
        (["toy", "--out", str(tmp_path / "o"), "--quick", "--steps", "10,ten"], "--steps"),
        (["toy", "--out", str(tmp_path / "o"), "--quick", "--tokenizer", "wordpiece"], "--tokenizer"),
    ]
    for argv, word in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and word in err[0] and err[0].startswith("llmjp-ckpt toy: error:"), err
    assert not (tmp_path / "o").exists()
