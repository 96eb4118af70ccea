"""Token ids -> text for any tokenizer the stack meets, for display, labels and exports.

Three tokenizer kinds, detected from the Hugging Face tokenizer itself (:func:`tokenizer_kind`:
its backend's decoder / pre-tokenizer, or the slow tokenizer's class):

- ``sentencepiece`` (LLM-jp, Llama-2, Gemma): ``▁`` marks a space, ``<0xNN>`` pieces are byte
  fallback;
- ``byte-bpe`` (GPT-2, Pythia, OLMo, Llama-3, Qwen): each piece is a run of UTF-8 bytes written
  in the byte-level alphabet (``Ġ`` = space; one kanji = three Latin-1-looking letters, which
  may fall in two or three tokens);
- ``wordpiece`` (BERT): ``##`` continues a word, any other piece starts one (shown with a
  leading space).

Every token is first turned into its real bytes (:meth:`TokenText.token_bytes`); text is then
rebuilt from bytes across tokens, so a character whose bytes span several tokens is shown once,
on the token that completes it. Views:

- :meth:`TokenText.piece_text` — one token alone, the study's example format: ``▁`` -> space,
  byte-fallback pieces kept as ``<0xNN>``; for the other kinds the token's bytes as text, bytes
  that are no whole character alone written ``<0xNN>``.
- :meth:`TokenText.example_texts` — a window's tokens as labels and exports see them: the
  study's ``piece_text`` for SentencePiece (its published format); for the other kinds the
  characters each token completes (:data:`PARTIAL` for a token holding only part of one).
- :meth:`TokenText.display` — what a reader sees for a window: characters merged across tokens
  (earlier partial-byte tokens show :data:`PARTIAL`), bytes that never form valid UTF-8 shown
  as U+FFFD, ids past the tokenizer (the model's padded vocabulary) named ``<pad-id N>``, BOS
  hidden (empty string), and control characters other than newline and tab shown as their
  Unicode "control picture" (``\\x07`` -> ``␇``), never raw.
- :meth:`TokenText.single_text` — one id alone (logit tables): lone bytes as ``\\xNN``.

No GPT-2 vocabulary table: the pieces come from the tokenizer itself; only the byte-level
alphabet (a fixed bijection of the 256 bytes, :func:`byte_decoder`) is inverted.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache, cached_property
from pathlib import Path
from typing import Any

from llmjp_ckpt.chars import byte_of_piece
from llmjp_ckpt.errors import UserError

SPACE_MARK = "\u2581"  # SentencePiece's "▁"
PARTIAL = "\u25cc"  # "◌": placeholder for a token holding only part of a multibyte character
INVALID = "\ufffd"  # bytes that never complete a valid UTF-8 character


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


KINDS = ("sentencepiece", "byte-bpe", "wordpiece")


@cache
def byte_decoder() -> dict[str, int]:
    """The byte-level alphabet inverted: letter -> byte.

    GPT-2's ``bytes_to_unicode`` (used unchanged by the ``tokenizers`` ByteLevel pre-tokenizer
    and every byte-level BPE since): printable Latin-1 bytes stand for themselves, the other
    68 bytes are shifted to U+0100.. in byte order (``Ġ`` = U+0120 = the space byte).
    """
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    shifted = [b for b in range(256) if b not in keep]
    table = {chr(b): b for b in keep}
    table.update({chr(0x100 + i): b for i, b in enumerate(shifted)})
    return table


def _component_types(node: Any) -> set[str]:
    """Every ``type`` in a tokenizer.json component (``Sequence`` members included)."""
    if isinstance(node, dict):
        out = {str(node["type"])} if "type" in node else set()
        if node.get("type") == "Replace" and SPACE_MARK in json.dumps(node.get("pattern")):
            out.add("Metaspace")  # Llama-style decoders spell ▁ -> space as a Replace
        for v in node.values():
            out |= _component_types(v)
        return out
    if isinstance(node, list):
        return set().union(*map(_component_types, node)) if node else set()
    return set()


def tokenizer_kind(tokenizer: Any) -> str:
    """``sentencepiece``, ``byte-bpe`` or ``wordpiece`` for a Hugging Face tokenizer.

    Fast tokenizers are read from their backend's decoder and pre-tokenizer (``ByteLevel``;
    ``Metaspace`` / ``ByteFallback`` / a ``▁`` Replace; ``WordPiece``); slow ones from what they
    hold (``sp_model``, ``byte_decoder``, ``wordpiece_tokenizer``). Anything else: UserError.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    found: set[str] = set()
    if backend is not None:
        spec = json.loads(backend.to_str())
        found = _component_types(spec.get("decoder")) | _component_types(spec.get("pre_tokenizer"))
        found.add(f"model:{(spec.get('model') or {}).get('type')}")
        if "ByteLevel" in found:
            return "byte-bpe"
        if found & {"Metaspace", "ByteFallback", "model:Unigram"}:
            return "sentencepiece"
        if found & {"WordPiece", "model:WordPiece"}:
            return "wordpiece"
    else:
        if hasattr(tokenizer, "sp_model"):
            return "sentencepiece"
        if hasattr(tokenizer, "byte_decoder"):
            return "byte-bpe"
        if hasattr(tokenizer, "wordpiece_tokenizer"):
            return "wordpiece"
    name = getattr(tokenizer, "name_or_path", "") or type(tokenizer).__name__
    seen = f" (decoder/pre-tokenizer {sorted(found)})" if found else ""
    raise UserError(f"tokenizer {name}: {type(tokenizer).__name__}{seen} is not a supported type: "
                    "expected SentencePiece, byte-level BPE or WordPiece")


def _bytes_as_pieces(data: bytes) -> str:
    """``data`` as text, bytes that are no whole character alone written ``<0xNN>``."""
    return _decode_marking(data, lambda b: f"<0x{b:02X}>")


def _decode_marking(data: bytes, mark: Any) -> str:
    out, i = [], 0
    while i < len(data):
        n = _utf8_length(data[i])
        try:
            if n == 0:
                raise UnicodeDecodeError("utf-8", data, i, i + 1, "invalid lead byte")
            out.append(data[i:i + n].decode("utf-8"))
            i += n
        except UnicodeDecodeError:
            out.append(mark(data[i]))
            i += 1
    return "".join(out)


@dataclass(frozen=True)
class TokenText:
    """Id -> text for one tokenizer: ``pieces[id]`` is the raw vocabulary string of the id."""

    pieces: tuple[str, ...]
    bos_id: int | None = None
    kind: str = "sentencepiece"
    """One of :data:`KINDS`; decides how a piece becomes bytes."""
    specials: frozenset[int] = field(default_factory=frozenset)
    """Ids shown as their piece, never read as bytes (special and added tokens)."""

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise UserError(f"tokenizer kind {self.kind!r}: expected one of {', '.join(KINDS)}")

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
        """From a Hugging Face tokenizer (slow or fast); its kind from :func:`tokenizer_kind`."""
        kind = tokenizer_kind(tokenizer)
        n = len(tokenizer)
        pieces = tuple(str(p) for p in tokenizer.convert_ids_to_tokens(list(range(n))))
        added = getattr(tokenizer, "added_tokens_decoder", {}) or {}
        specials = frozenset(int(i) for i in added) | frozenset(
            int(i) for i in getattr(tokenizer, "all_special_ids", []) or [])
        if kind == "sentencepiece":  # its specials (<s>, <unk>) read as their text: no change
            specials = frozenset()
        return cls(pieces, getattr(tokenizer, "bos_token_id", None), kind, specials)

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

    def _piece_bytes(self, token_id: int) -> bytes | None:
        piece = self.pieces[token_id]
        if token_id in self.specials:
            return None
        if self.kind == "sentencepiece":
            b = byte_of_piece(piece)
            return bytes([b]) if b is not None else piece.replace(SPACE_MARK, " ").encode("utf-8")
        if self.kind == "byte-bpe":
            table = byte_decoder()
            try:
                return bytes(table[c] for c in piece)
            except KeyError:  # not in the byte alphabet: an added token's literal text
                return None
        return (piece[2:] if piece.startswith("##") else " " + piece).encode("utf-8")

    @cached_property
    def _bytes(self) -> tuple[bytes | None, ...]:
        return tuple(self._piece_bytes(i) for i in range(len(self.pieces)))

    @cached_property
    def _alone(self) -> tuple[str | None, ...]:
        """Per id: its text when its bytes are whole characters on their own, else None."""
        out: list[str | None] = []
        for i, b in enumerate(self._bytes):
            if b is None:
                out.append(self.pieces[i])
                continue
            try:
                out.append(b.decode("utf-8"))
            except UnicodeDecodeError:
                out.append(None)
        return tuple(out)

    @cached_property
    def _piece_texts(self) -> tuple[str, ...]:
        if self.kind == "sentencepiece":
            return tuple(p.replace(SPACE_MARK, " ") for p in self.pieces)
        return tuple(t if t is not None else _bytes_as_pieces(self._bytes[i] or b"")
                     for i, t in enumerate(self._alone))

    def token_bytes(self, token_id: int) -> bytes | None:
        """The real bytes of one token (None for special / added tokens and padded ids)."""
        token_id = int(token_id)
        if token_id < 0:
            raise UserError(f"token id {token_id}: expected a non-negative id")
        return self._bytes[token_id] if token_id < len(self.pieces) else None

    def piece_text(self, token_id: int) -> str:
        """One token alone in the study's format (``▁`` -> space, lone bytes as ``<0xNN>``)."""
        token_id = int(token_id)
        if 0 <= token_id < len(self.pieces):
            return self._piece_texts[token_id]
        return self.piece(token_id)

    def single_text(self, token_id: int) -> str:
        """One id alone for logit tables: a byte that is no whole character shown ``\\xNN``."""
        b = self.token_bytes(token_id)
        if b is None:
            return self.piece(token_id)
        return visible_controls(_decode_marking(b, lambda x: f"\\x{x:02X}"))

    # --- windows ------------------------------------------------------------------------
    def _merge(self, ids: Sequence[int], hide_bos: bool) -> list[str]:
        """Per-token text for a window, characters rebuilt from bytes across tokens."""
        out: list[str] = []
        buf = bytearray()
        need = 0
        run: list[int] = []  # positions in ``out`` holding bytes of the pending character

        def abandon() -> None:
            for pos in run:
                out[pos] = INVALID if out[pos] in ("", PARTIAL) else out[pos] + INVALID
            run.clear()
            buf.clear()

        for token_id in ids:
            token_id = int(token_id)
            pos = len(out)
            out.append("")
            if hide_bos and self.bos_id is not None and token_id == self.bos_id:
                abandon()
                continue
            data = self.token_bytes(token_id)
            if data is None:
                abandon()
                out[pos] = self.piece(token_id)
                continue
            for x in data:
                if buf:
                    if 0x80 <= x <= 0xBF:  # a continuation byte of the pending character
                        buf.append(x)
                        if run[-1] != pos:
                            run.append(pos)
                        if len(buf) == need:
                            try:
                                out[pos] += bytes(buf).decode("utf-8")
                            except UnicodeDecodeError:  # e.g. surrogates or overlong forms
                                abandon()
                                continue
                            run.clear()
                            buf.clear()
                        continue
                    abandon()  # a new lead byte interrupts an unfinished character
                n = _utf8_length(x)
                if n == 1:
                    out[pos] += chr(x)
                elif n == 0:  # a stray continuation byte or a byte never valid in UTF-8
                    out[pos] += INVALID
                else:
                    buf.append(x)
                    need = n
                    run.append(pos)
            if out[pos] == "" and run and run[-1] == pos:
                out[pos] = PARTIAL
        abandon()
        return out

    def display(self, ids: Sequence[int], hide_bos: bool = True) -> list[str]:
        """Per-token display text for a window, characters merged across tokens."""
        return [visible_controls(t) for t in self._merge(ids, hide_bos)]

    def example_texts(self, ids: Sequence[int]) -> list[str]:
        """A window's tokens for labels and exports (BOS kept as its piece).

        SentencePiece keeps the study's published format (:meth:`piece_text` per token); the
        other kinds give each token the characters it completes (:data:`PARTIAL` for a token
        holding only part of one), so the language rules see real characters.
        """
        ids = [int(i) for i in ids]
        if self.kind == "sentencepiece":
            return [self.piece_text(i) for i in ids]
        alone, n = self._alone, len(self.pieces)
        texts = [alone[i] if 0 <= i < n else self.piece(i) for i in ids]
        if all(t is not None for t in texts):
            return texts  # type: ignore[return-value]
        return self._merge(ids, hide_bos=False)

    def decode(self, ids: Sequence[int], hide_bos: bool = True) -> str:
        """A window's text: the display pieces joined, placeholders dropped."""
        return "".join(t for t in self.display(ids, hide_bos) if t != PARTIAL)
