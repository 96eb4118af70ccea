"""A SentencePiece Unigram tokenizer in LLM-jp's style, built from the toy corpus.

Byte fallback, the ``▁`` word marker, ``<unk>``=0, ``<s>``=1, ``</s>``=2, ``<pad>``=3, identity
normalisation (so the Hugging Face fast tokenizer converted from it gives the same ids), saved
as a ``LlamaTokenizerFast`` folder (``tokenizer.model`` + ``tokenizer.json`` +
``tokenizer_config.json`` with ``add_bos_token: true``) — like the real LLM-jp-3 tokenizer.
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
