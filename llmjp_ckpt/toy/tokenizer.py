"""The toy's tokenizer, built from the toy corpus: SentencePiece (LLM-jp's kind) or byte-level BPE.

``sentencepiece`` (the default): a Unigram model in LLM-jp's style — byte fallback, the ``▁``
word marker, ``<unk>``=0, ``<s>``=1, ``</s>``=2, ``<pad>``=3, identity normalisation (so the
Hugging Face fast tokenizer converted from it gives the same ids), saved as a
``LlamaTokenizerFast`` folder (``tokenizer.model`` + ``tokenizer.json`` +
``tokenizer_config.json`` with ``add_bos_token: true``) — like the real LLM-jp-3 tokenizer.

``byte-bpe``: a byte-level BPE (``tokenizers``' ``ByteLevelBPETokenizer``: GPT-2 / Pythia /
OLMo / Llama-3 style, ``Ġ`` for a space, a kanji's three bytes merged or not) with the same
four specials at the same ids, saved as a ``PreTrainedTokenizerFast`` folder whose
post-processor prepends ``<s>``.

Either way the toy reads its tokenizer through :func:`toy_encoder` (``encode(text)`` → ids
without BOS) and :func:`attached_encoder` (a form right after other text).
"""

from __future__ import annotations

import math
import re
import tempfile
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

# Boundary put around every planted form when building the vocabulary, so that no piece spans a
# form and its neighbours: the forms then tokenise the same way wherever they occur.
DELIMITER = "\t"
SPECIALS = {"<unk>": 0, "<s>": 1, "</s>": 2, "<pad>": 3}


def chunks(delimited: str) -> list[str]:
    """Split one delimited text into candidate pieces: words (with their ``▁``), forms, literals."""
    s = "▁" + delimited.replace(" ", "▁")  # add_dummy_prefix + whitespace escaping, as spm does
    s = s.replace("▁" + DELIMITER, DELIMITER + "▁")  # a form keeps the space before it: ▁cat
    return [w for part in s.split(DELIMITER) for w in re.findall(r"▁?[^▁]+|▁", part)]


def build_unigram(texts: Iterable[str], vocab_size: int, min_count: int = 2) -> bytes:
    """A SentencePiece Unigram model for ``texts`` (forms delimited by :data:`DELIMITER`).

    Pieces: the specials, the 256 byte-fallback pieces, the most frequent word/form/literal
    chunks (scored by log relative frequency — one maximum-likelihood step of Unigram
    training) and every character seen (scored below any chunk). SentencePiece's own EM
    trainer degenerates on a corpus this small and repetitive (it drops even ``▁The``), so the
    inventory comes from the generator's own word boundaries instead; encoding is plain
    SentencePiece Viterbi.
    """
    from sentencepiece import sentencepiece_model_pb2 as pb

    counts: Counter[str] = Counter()
    chars: set[str] = set()
    for t in texts:
        counts.update(chunks(t))
        chars.update(t.replace(DELIMITER, "").replace(" ", "▁"))
    n_fixed = len(SPECIALS) + 256
    kept = [(w, c) for w, c in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if c >= min_count]
    kept = kept[: max(0, vocab_size - n_fixed - len(chars))]
    total = sum(c for _, c in kept) or 1
    scores = {w: math.log(c / total) for w, c in kept}
    floor = min(scores.values(), default=0.0) - 2.0
    for ch in sorted(chars):
        scores.setdefault(ch, floor)

    m = pb.ModelProto()
    T = pb.ModelProto.SentencePiece
    for piece, pid in SPECIALS.items():
        m.pieces.add(piece=piece, score=0.0, type=T.UNKNOWN if pid == 0 else T.CONTROL)
    for b in range(256):
        m.pieces.add(piece=f"<0x{b:02X}>", score=0.0, type=T.BYTE)
    for piece, score in sorted(scores.items(), key=lambda x: (-x[1], x[0])):
        m.pieces.add(piece=piece, score=score, type=T.NORMAL)
    ts = m.trainer_spec
    ts.model_type = pb.TrainerSpec.UNIGRAM
    ts.vocab_size = len(m.pieces)
    ts.byte_fallback = True
    ts.character_coverage = 1.0
    ts.split_digits = True
    ts.unk_id, ts.bos_id, ts.eos_id, ts.pad_id = 0, 1, 2, 3
    ts.unk_piece, ts.bos_piece, ts.eos_piece, ts.pad_piece = SPECIALS
    ns = m.normalizer_spec
    ns.name = "identity"  # no NFKC: the HF fast tokenizer then gives the same ids
    ns.add_dummy_prefix = True
    ns.remove_extra_whitespaces = False
    ns.escape_whitespaces = True
    return m.SerializeToString()


def save_hf_tokenizer(model_bytes: bytes, out_dir: str | Path) -> Path:
    """Write the HF tokenizer files for ``model_bytes`` into ``out_dir``."""
    from transformers import LlamaTokenizerFast

    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory() as tmp:
        model_file = Path(tmp) / "tokenizer.model"
        model_file.write_bytes(model_bytes)
        tok = LlamaTokenizerFast(
            vocab_file=str(model_file), add_bos_token=True, add_eos_token=False,
            pad_token="<pad>", legacy=True, add_prefix_space=True, from_slow=True,
        )
        tok.save_pretrained(str(out_dir))
    return out_dir


def load_hf_tokenizer(path: str | Path):
    """The saved tokenizer, as ``AutoTokenizer`` loads it."""
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


def padded_vocab_size(n: int, multiple: int = 128) -> int:
    """The model's vocabulary: the next multiple of ``multiple`` strictly past ``n``.

    LLM-jp-3 pads its embedding (99,584 rows) past its tokenizer's size; the extra ids are never
    produced by the tokenizer.
    """
    return int(math.ceil((n + 1) / multiple) * multiple)


TOKENIZERS = ("sentencepiece", "byte-bpe")


def check_kind(kind: str) -> str:
    """``kind`` if it is a toy tokenizer kind, else a :class:`UserError`."""
    from llmjp_ckpt.errors import UserError

    if kind not in TOKENIZERS:
        raise UserError(f"--tokenizer {kind!r}: expected one of {', '.join(TOKENIZERS)}")
    return kind


def build_byte_bpe(texts: Iterable[str], vocab_size: int, min_frequency: int = 2):
    """A byte-level BPE ``tokenizers.Tokenizer`` for ``texts`` (forms delimited by
    :data:`DELIMITER`, which the byte-level pre-tokenizer splits on like any whitespace, so no
    merge spans a form and its neighbours)."""
    from tokenizers import ByteLevelBPETokenizer

    # a form keeps the space before it (``Ġcat``), as :func:`chunks` does for SentencePiece
    texts = [t.replace(" " + DELIMITER, DELIMITER + " ") for t in texts]
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=min_frequency,
                            special_tokens=list(SPECIALS), show_progress=False)
    tok = bpe._tokenizer  # the underlying tokenizers.Tokenizer (ByteLevelBPETokenizer wraps it)
    for piece, pid in SPECIALS.items():
        if tok.token_to_id(piece) != pid:
            raise RuntimeError(f"byte-level BPE put {piece} at {tok.token_to_id(piece)}, not {pid}")
    return tok


def save_hf_byte_bpe(tok, out_dir: str | Path) -> Path:
    """Write ``tok`` as a ``PreTrainedTokenizerFast`` folder that prepends ``<s>``."""
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    tok.post_processor = TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B",
                                            special_tokens=[("<s>", SPECIALS["<s>"])])
    hf = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>",
                                 unk_token="<unk>", pad_token="<pad>")
    hf.init_kwargs["add_bos_token"] = True  # read by TransformerLens (prepend_bos) and our loader
    hf.save_pretrained(str(out_dir))
    return Path(out_dir)


class _HFEncoder:
    """``encode(text)`` → ids without specials, from a ``tokenizer.json``."""

    def __init__(self, tokenizer_json: Path) -> None:
        from tokenizers import Tokenizer

        self.tok = Tokenizer.from_file(str(tokenizer_json))

    def encode(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids


def toy_encoder(tokenizer_dir: str | Path):
    """The toy tokenizer in ``tokenizer_dir`` as an object with ``encode(text) -> ids`` (no BOS):
    SentencePiece's own processor when ``tokenizer.model`` is there, else ``tokenizer.json``."""
    folder = Path(tokenizer_dir)
    if (folder / "tokenizer.model").is_file():
        import sentencepiece as spm

        return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))
    return _HFEncoder(folder / "tokenizer.json")


def attached_encoder(tokenizer_dir: str | Path):
    """Like :func:`toy_encoder`, for text right after other text (SentencePiece without its
    dummy ``▁`` prefix; byte-level BPE needs no change: it adds no prefix space)."""
    folder = Path(tokenizer_dir)
    if (folder / "tokenizer.model").is_file():
        import sentencepiece as spm
        from sentencepiece import sentencepiece_model_pb2 as pb

        proto = pb.ModelProto()
        proto.ParseFromString((folder / "tokenizer.model").read_bytes())
        proto.normalizer_spec.add_dummy_prefix = False
        return spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    return _HFEncoder(folder / "tokenizer.json")
