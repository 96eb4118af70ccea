"""Token id -> text: a SentencePiece tokenizer trained here, and the real LLM-jp one if present."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from llmjp_ckpt.errors import UserError
from llmjp_ckpt.tokens import INVALID, PARTIAL, TokenText, byte_of_piece

SHARED = Path(__file__).resolve().parents[2] / "shared"
LLMJP_MODEL = SHARED / "data" / "llm-jp-tokenizer-100k.ver3.0b1.model"

CORPUS = [
    "The cat sat on the mat. The dog ran in the park.",
    "京都は日本の古い都です。東京は大きな都市です。",
    "Kyoto is an old capital of Japan. Tokyo is a large city.",
    "今日は天気がいいですね。明日も晴れるでしょう。",
] * 20


@pytest.fixture(scope="module")
def small_sp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    spm = pytest.importorskip("sentencepiece")
    out = tmp_path_factory.mktemp("sp")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS),
        model_writer=model,
        vocab_size=400,
        byte_fallback=True,
        character_coverage=1.0,  # 𠮷 and newline are not in CORPUS: byte fallback
        normalization_rule_name="identity",
        remove_extra_whitespaces=False,
        minloglevel=2,
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1,
        hard_vocab_limit=False,
    )
    path = out / "small.model"
    path.write_bytes(model.getvalue())
    return path


def _encode(model: Path, text: str) -> list[int]:
    import sentencepiece as spm

    return spm.SentencePieceProcessor(model_file=str(model)).encode(text)


def test_byte_of_piece() -> None:
    assert byte_of_piece("<0xE3>") == 0xE3
    assert byte_of_piece("<0x0a>") == 0x0A
    assert byte_of_piece("▁<0xE3>") is None
    assert byte_of_piece("京") is None


def test_piece_text_and_display_small(small_sp: Path) -> None:
    tt = TokenText.from_sentencepiece(small_sp)
    text = "The cat 𠮷 sat\n"
    ids = _encode(small_sp, text)
    pieces = [tt.piece_text(i) for i in ids]
    assert "▁" not in "".join(pieces)
    assert any(p.startswith("<0x") for p in pieces), pieces  # 𠮷 and \n are byte pieces
    shown = tt.display([tt.bos_id, *ids])
    assert shown[0] == ""  # BOS hidden
    assert "<0x" not in "".join(shown)
    assert "".join(t for t in shown if t != PARTIAL).strip() == text.strip()
    # 𠮷 is four bytes: three placeholders, then the character on the completing token
    k = shown.index("𠮷")
    assert shown[k - 3 : k] == [PARTIAL] * 3
    assert tt.decode([tt.bos_id, *ids]).lstrip() == text


def test_padded_ids_and_broken_bytes(small_sp: Path) -> None:
    tt = TokenText.from_sentencepiece(small_sp)
    pad = len(tt) + 7
    assert tt.piece_text(pad) == f"<pad-id {pad}>"
    assert tt.display([pad]) == [f"<pad-id {pad}>"]
    e3 = tt.pieces.index("<0xE3>")
    a = tt.pieces.index("▁a") if "▁a" in tt.pieces else tt.pieces.index("a")
    # an unfinished character interrupted by a normal piece, then a stray continuation byte
    shown = tt.display([e3, a, tt.pieces.index("<0x81>")])
    assert shown[0] == INVALID and shown[2] == INVALID and "a" in shown[1]
    with pytest.raises(UserError):
        tt.piece_text(-1)


def test_missing_model_is_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not found"):
        TokenText.from_sentencepiece(tmp_path / "nope.model")


@pytest.mark.skipif(not LLMJP_MODEL.exists(), reason="LLM-jp tokenizer not in ../shared/data")
def test_real_llmjp_tokenizer() -> None:
    tt = TokenText.from_sentencepiece(LLMJP_MODEL)
    text = "京都は\n美しい 𠮷 The cat"
    ids = _encode(LLMJP_MODEL, text)
    assert [tt.piece_text(i) for i in ids][:3] == [" 京都", "は", "<0x0A>"]
    shown = tt.display([1, *ids, 99583])
    assert shown[0] == "" and shown[-1] == "<pad-id 99583>"
    assert "𠮷" in shown and "▁" not in "".join(shown)
    assert tt.decode([1, *ids]) == " " + text
    # the same pieces through transformers' LlamaTokenizer (slow, SentencePiece-backed)
    from transformers import LlamaTokenizer

    hf = TokenText.from_hf(LlamaTokenizer(vocab_file=str(LLMJP_MODEL), legacy=True))
    assert hf.pieces == tt.pieces and hf.bos_id == tt.bos_id == 1


def test_control_characters_visible_html_untouched() -> None:
    tt = TokenText(("<unk>", "<s>", "</s>", "<0x07>", "<0x0A>", "a\x1bb", "<script>", "▁&amp;"), bos_id=1)
    assert tt.display([1, 3, 4, 5, 6, 7]) == ["", "\u2407", "\n", "a\u241bb", "<script>", " &amp;"]
    assert tt.piece_text(5) == "a\x1bb"  # the study's format keeps the piece as is


# --- byte-level BPE and the other kinds ------------------------------------------------------


def _alphabet_piece(data: bytes) -> str:
    """``data`` written in the byte-level alphabet, as a byte-level BPE vocabulary holds it."""
    from llmjp_ckpt.tokens import byte_decoder

    enc = {b: ch for ch, b in byte_decoder().items()}
    return "".join(enc[b] for b in data)


def test_byte_alphabet_is_the_tokenizers_one() -> None:
    from tokenizers.pre_tokenizers import ByteLevel

    from llmjp_ckpt.tokens import byte_decoder

    table = byte_decoder()
    assert set(table) == set(ByteLevel.alphabet()) and sorted(table.values()) == list(range(256))
    assert table["Ġ"] == 0x20 and table["Ċ"] == 0x0A and table["A"] == 0x41


NEKO = "猫".encode()  # e7 8c ab


@pytest.mark.parametrize("splits", [
    [NEKO[:1], NEKO[1:2], NEKO[2:]],  # three tokens
    [NEKO[:1], NEKO[1:]],             # two tokens, lead byte alone
    [NEKO[:2], NEKO[2:]],             # two tokens, last byte alone
])
def test_kanji_split_across_tokens_shown_once(splits: list[bytes]) -> None:
    pieces = ("<unk>", "<s>", *(_alphabet_piece(b) for b in splits), _alphabet_piece(b" is"))
    tt = TokenText(pieces, bos_id=1, kind="byte-bpe", specials=frozenset({0, 1}))
    ids = [1, *range(2, 2 + len(splits)), len(pieces) - 1]
    shown = tt.display(ids)
    assert shown == ["", *[PARTIAL] * (len(splits) - 1), "猫", " is"]
    assert tt.example_texts(ids) == ["<s>", *shown[1:]]
    assert tt.decode(ids) == "猫 is"
    assert not any(ch in "".join(shown) for ch in "çĮ«Ġ")  # no byte alphabet, no mojibake
    first = tt.piece_text(2)
    assert first.startswith("<0xE7>") and tt.single_text(2).startswith("\\xE7")


def test_bytes_shared_between_characters_and_broken_runs() -> None:
    ja = "の猫は".encode()  # の = e3 81 ae, 猫 = e7 8c ab, は = e3 81 af
    parts = [ja[:4], ja[4:8], ja[8:]]  # の + 1st byte of 猫 | rest of 猫 + 1st byte of は | rest
    pieces = ("<s>", *(_alphabet_piece(p) for p in parts), _alphabet_piece(b" a"), "<|endoftext|>")
    tt = TokenText(pieces, bos_id=0, kind="byte-bpe", specials=frozenset({0, 5}))
    assert tt.display([1, 2, 3]) == ["の", "猫", "は"]
    # an unfinished character cut by a plain token or a special one: U+FFFD, never the bytes
    assert tt.display([1, 4]) == ["の" + INVALID, " a"]
    assert tt.display([1, 5]) == ["の" + INVALID, "<|endoftext|>"]
    assert tt.display([3]) == [INVALID] and tt.display([2]) == [INVALID * 3]  # stray bytes
    assert tt.display([1]) == ["の" + INVALID]  # a window that ends mid-character


@pytest.fixture(scope="module")
def toy_bpe(tmp_path_factory: pytest.TempPathFactory):
    """A byte-level BPE trained on the toy corpus, saved and loaded as Hugging Face does."""
    from llmjp_ckpt.toy import tokenizer as tk
    from llmjp_ckpt.toy.corpus import CorpusConfig, Generator
    from llmjp_ckpt.toy.tokenizer import load_hf_tokenizer

    docs = Generator(0, CorpusConfig(n_docs=200)).documents()
    out = tmp_path_factory.mktemp("bpe")
    tk.save_hf_byte_bpe(tk.build_byte_bpe([d.delimited(tk.DELIMITER) for d in docs], 600), out)
    return out, load_hf_tokenizer(out)


def test_byte_bpe_trained_on_the_toy_corpus(toy_bpe) -> None:
    from llmjp_ckpt.labels.language import paper_language, script_language

    folder, hf = toy_bpe
    tt = TokenText.load(folder)
    assert tt.kind == "byte-bpe" and tt.bos_id == 1 and {0, 1, 2, 3} <= tt.specials
    text = "猫の色は黒です。 The cat is black.\n𠮷野家 (dog)"
    ids = hf(text).input_ids
    assert ids[0] == 1
    raw = [tt.pieces[i] for i in ids]
    assert any("Ġ" in p for p in raw) and any("ã" in p or "ç" in p for p in raw)  # the alphabet
    shown = tt.display(ids)
    assert "".join(t for t in shown if t != PARTIAL) == text == tt.decode(ids)
    joined = "".join(shown)
    assert not any(ch in joined for ch in "ĠĊãçèé")
    k = shown.index("𠮷") if "𠮷" in shown else -1  # 𠮷 is not in the corpus: four byte tokens
    assert k > 0 and shown[k - 3:k] == [PARTIAL] * 3
    # the label rules see characters: a window of the Japanese tokens is ja by both rules
    ja = hf("猫の色は黒です。", add_special_tokens=False).input_ids
    window = [[t, 1.0] for t in tt.example_texts(ja)]
    assert script_language([window]) == "ja" and paper_language([window]) == "ja"
    assert script_language([[[p, 1.0] for p in (tt.pieces[i] for i in ja)]]) == "en"  # the bug


def test_kind_detection_and_unsupported_tokenizer(tmp_path: Path, small_sp: Path) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import BertTokenizerFast, LlamaTokenizerFast, PreTrainedTokenizerFast

    from llmjp_ckpt.cli import main
    from llmjp_ckpt.tokens import tokenizer_kind

    llama = LlamaTokenizerFast(vocab_file=str(small_sp), legacy=True)
    assert tokenizer_kind(llama) == "sentencepiece"
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n猫\nplay\n##ing\n")
    bert = BertTokenizerFast(vocab_file=str(vocab))
    tt = TokenText.from_hf(bert)
    assert tt.kind == "wordpiece"
    ids = bert("猫 playing", add_special_tokens=False).input_ids
    assert tt.display(ids) == [" 猫", " play", "ing"]
    wl = Tokenizer(models.WordLevel({"<unk>": 0, "a": 1}, unk_token="<unk>"))
    wl.pre_tokenizer = pre_tokenizers.Whitespace()
    odd = PreTrainedTokenizerFast(tokenizer_object=wl, unk_token="<unk>")
    with pytest.raises(UserError, match="not a supported type"):
        TokenText.from_hf(odd)
    odd.save_pretrained(str(tmp_path / "odd"))
    with pytest.raises(UserError) as exc:
        TokenText.load(tmp_path / "odd")
    assert "\n" not in str(exc.value)
    run = tmp_path / "run"
    assert main(["features", "--run", str(run), "--tokenizer", str(tmp_path / "odd")]) == 2
    assert not run.exists()
