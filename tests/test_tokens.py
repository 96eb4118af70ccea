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
