"""Token ids -> text for SentencePiece (LLM-jp) tokenizers, for display and for examples.

Two views of a token:

- :meth:`TokenText.piece_text` — the study's example format: the piece with ``▁`` replaced by
  a space, byte-fallback pieces kept as ``<0xNN>`` (``' The'``, ``'<0x0A>'``, ``'京都'``).
- :meth:`TokenText.display` — what a reader should see for a window of ids: ``▁`` as a space,
  runs of byte-fallback pieces merged back into characters (the token that completes a
  character shows it, the earlier partial-byte tokens show :data:`PARTIAL`), bytes that never
  form valid UTF-8 shown as U+FFFD, ids past the tokenizer (the model's padded vocabulary)
  named ``<pad-id N>``, BOS hidden (empty string), and control characters other than newline
  and tab shown as their Unicode "control picture" (``\x07`` -> ``␇``), never raw.

Nothing here goes through a GPT-2 byte table: the pieces come from the tokenizer itself.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmjp_ckpt.errors import UserError

SPACE_MARK = "\u2581"  # SentencePiece's "▁"
PARTIAL = "\u25cc"  # "◌": placeholder for a token holding only part of a multibyte character
INVALID = "\ufffd"  # bytes that never complete a valid UTF-8 character
_BYTE_PIECE = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")


def byte_of_piece(piece: str) -> int | None:
    """The byte value of a byte-fallback piece like ``<0xE3>``, else None."""
    m = _BYTE_PIECE.match(piece)
    return int(m.group(1), 16) if m else None


def pad_id_text(token_id: int) -> str:
    """How an id past the tokenizer's vocabulary (padded embedding rows) is named."""
    return f"<pad-id {int(token_id)}>"


def visible_controls(text: str) -> str:
    """Control characters (except newline and tab) as Unicode control pictures (U+2400..)."""
    return "".join(
        chr(0x2400 + ord(ch)) if ord(ch) < 0x20 and ch not in "\n\t"
        else "\u2421" if ch == "\x7f" else ch
        for ch in text
    )


def _utf8_length(lead: int) -> int:
    """Expected length of a UTF-8 sequence from its lead byte (0 for a continuation/invalid)."""
    if lead < 0x80:
        return 1
    if 0xC2 <= lead <= 0xDF:
        return 2
    if 0xE0 <= lead <= 0xEF:
        return 3
    if 0xF0 <= lead <= 0xF4:
        return 4
    return 0


@dataclass(frozen=True)
class TokenText:
    """Id -> text for one tokenizer: ``pieces[id]`` is the raw SentencePiece piece."""

    pieces: tuple[str, ...]
    bos_id: int | None = None

    # --- construction -------------------------------------------------------------------
    @classmethod
    def from_sentencepiece(cls, model_file: str | Path) -> TokenText:
        """From a SentencePiece ``.model`` file (e.g. llm-jp-tokenizer-100k.ver3.0b1.model)."""
        import sentencepiece as spm

        path = Path(model_file)
        if not path.is_file():
            raise UserError(f"{path}: tokenizer model not found (expected a SentencePiece .model file)")
        sp = spm.SentencePieceProcessor(model_file=str(path))
        pieces = tuple(sp.id_to_piece(i) for i in range(sp.get_piece_size()))
        bos = sp.bos_id()
        return cls(pieces, bos if bos >= 0 else None)

    @classmethod
    def from_hf(cls, tokenizer: Any) -> TokenText:
        """From a Hugging Face tokenizer (slow or fast) whose vocabulary is SentencePiece-style."""
        n = len(tokenizer)
        pieces = tuple(str(p) for p in tokenizer.convert_ids_to_tokens(list(range(n))))
        return cls(pieces, getattr(tokenizer, "bos_token_id", None))

    @classmethod
    def load(cls, source: str | Path) -> TokenText:
        """From a ``.model`` file or a folder / name loadable with ``AutoTokenizer``."""
        p = Path(source)
        if p.suffix == ".model":
            return cls.from_sentencepiece(p)
        from transformers import AutoTokenizer

        try:
            tok = AutoTokenizer.from_pretrained(str(source))
        except (OSError, ValueError) as exc:
            raise UserError(f"{source}: cannot load a tokenizer ({exc.__class__.__name__})") from exc
        return cls.from_hf(tok)

    # --- single tokens ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.pieces)

    def piece(self, token_id: int) -> str:
        """The raw piece, or ``<pad-id N>`` for an id past the tokenizer."""
        token_id = int(token_id)
        if token_id < 0:
            raise UserError(f"token id {token_id}: expected a non-negative id")
        if token_id >= len(self.pieces):
            return pad_id_text(token_id)
        return self.pieces[token_id]

    def piece_text(self, token_id: int) -> str:
        """The study's example format: ``▁`` -> space, byte pieces kept as ``<0xNN>``."""
        return self.piece(token_id).replace(SPACE_MARK, " ")

    # --- windows ------------------------------------------------------------------------
    def display(self, ids: Sequence[int], hide_bos: bool = True) -> list[str]:
        """Per-token display text for a window, byte-fallback runs merged into characters."""
        out: list[str] = []
        run: list[int] = []  # positions in ``out`` of the pending byte pieces
        buf = bytearray()

        def flush_invalid() -> None:
            for pos in run:
                out[pos] = INVALID
            run.clear()
            buf.clear()

        for token_id in ids:
            token_id = int(token_id)
            if hide_bos and self.bos_id is not None and token_id == self.bos_id:
                flush_invalid()
                out.append("")
                continue
            b = byte_of_piece(self.piece(token_id)) if token_id < len(self.pieces) else None
            if b is None:
                flush_invalid()
                out.append(visible_controls(self.piece_text(token_id)))
                continue
            if not buf and _utf8_length(b) == 0:  # a stray continuation byte
                out.append(INVALID)
                continue
            if buf and (b & 0xC0) != 0x80:  # a new lead byte interrupts an unfinished char
                flush_invalid()
            out.append(PARTIAL)
            run.append(len(out) - 1)
            buf.append(b)
            if len(buf) == _utf8_length(buf[0]):
                try:
                    out[-1] = visible_controls(bytes(buf).decode("utf-8"))
                except UnicodeDecodeError:  # e.g. surrogates or overlong forms
                    flush_invalid()
                    continue
                for pos in run[:-1]:
                    out[pos] = PARTIAL
                run.clear()
                buf.clear()
        flush_invalid()
        return out

    def decode(self, ids: Sequence[int], hide_bos: bool = True) -> str:
        """A window's text: the display pieces joined, placeholders dropped."""
        return "".join(t for t in self.display(ids, hide_bos) if t != PARTIAL)
