"""The toy world with a byte-level BPE tokenizer (``--tokenizer byte-bpe``)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from llmjp_ckpt.toy import make_toy
from llmjp_ckpt.toy.corpus import CorpusConfig
from tests.toy.test_toy import corpus_texts, tiny_config


@pytest.fixture(scope="module")
def bpe_toy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy_bpe")
    make_toy(out, config=tiny_config(tokenizer="byte-bpe", corpus=CorpusConfig(n_docs=300)))
    return out


def test_tokenizer_folder_is_byte_level_bpe_with_llmjp_specials(bpe_toy: Path) -> None:
    from llmjp_ckpt.tokens import TokenText
    from llmjp_ckpt.toy.tokenizer import load_hf_tokenizer

    info = json.loads((bpe_toy / "toy.json").read_text(encoding="utf-8"))
    assert info["tokenizer"] == "byte-bpe" and info["config"]["tokenizer"] == "byte-bpe"
    files = {p.name for p in (bpe_toy / "tokenizer").iterdir()}
    assert "tokenizer.json" in files and "tokenizer.model" not in files
    tok = load_hf_tokenizer(bpe_toy / "tokenizer")
    assert [tok.convert_tokens_to_ids(t) for t in ("<unk>", "<s>", "</s>", "<pad>")] == [0, 1, 2, 3]
    assert tok("猫 cat").input_ids[0] == 1  # BOS prepended, like LLM-jp
    assert any(p.startswith("Ġ") for p in tok.convert_ids_to_tokens(range(len(tok))))
    tt = TokenText.load(bpe_toy / "tokenizer")
    assert tt.kind == "byte-bpe" and info["tokenizer_size"] == len(tok) < info["model_vocab_size"]


def test_planted_forms_tokenise_as_recorded_in_the_corpus(bpe_toy: Path) -> None:
    from llmjp_ckpt.toy.tokenizer import toy_encoder

    enc = toy_encoder(bpe_toy / "tokenizer")
    truth = json.loads((bpe_toy / "concepts.json").read_text(encoding="utf-8"))
    texts = corpus_texts(bpe_toy, "ja") + corpus_texts(bpe_toy, "en")
    checked, found = 0, 0
    for entry in truth["forms"]:
        assert not any("Ġ" in p or "ã" in p for p in entry["pieces"] + entry["pieces_attached"])
        form = entry["form"]
        pattern = re.escape(form) if entry["language"] == "ja" else \
            rf"(?<![A-Za-z]){re.escape(form)}(?![A-Za-z])"
        for text in [t for t in texts if re.search(pattern, t)][:5]:
            ids = enc.encode(text)
            want = [entry["ids"], entry["ids_attached"]]
            found += any(ids[i:i + len(w)] == w for w in want for i in range(len(ids)))
            checked += 1
    # Byte-level BPE may merge bytes across a character boundary (で|ネ in 伏見でネコを): a few
    # occurrences tokenise otherwise, as in any byte-level BPE; nearly all match the record.
    assert checked > 200 and found >= 0.97 * checked, (found, checked)


def test_byte_bpe_checkpoints_load_through_the_adapter(bpe_toy: Path) -> None:
    from transformers import LlamaForCausalLM

    from llmjp_ckpt.models.adapter import load_model
    from llmjp_ckpt.tokens import TokenText

    path = bpe_toy / "checkpoints" / "iter_0000004"
    tl = load_model(path)
    tt = TokenText.from_hf(tl.tokenizer)
    assert tt.kind == "byte-bpe"
    ids = tl.to_tokens("猫 (cat) は祇園に住んでいる。")
    assert int(ids[0, 0]) == 1 and tt.decode(ids[0].tolist()) == "猫 (cat) は祇園に住んでいる。"
    hf = LlamaForCausalLM.from_pretrained(str(path)).eval()
    with torch.no_grad():
        assert (tl(ids) - hf(ids).logits).abs().max().item() <= 1e-4
