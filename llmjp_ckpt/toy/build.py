"""Building the toy world into a folder (see the package docstring for the layout)."""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import time
from pathlib import Path

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models.adapter import study_layer_hook
from llmjp_ckpt.runfolder import step_dir
from llmjp_ckpt.toy.config import ToyConfig, default_config, parse_seed, quick_config
from llmjp_ckpt.toy.corpus import TAG, Generator, write_corpus
from llmjp_ckpt.toy.lexicon import COLOUR_OF, CONCEPTS, HOME_OF, LIKES, TAG_OF


def check_writable(out_dir: Path) -> None:
    """Refuse early, with one line, an output folder that cannot be created or written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir, prefix=atomic.TMP_PREFIX):
            pass
    except OSError as exc:
        raise UserError(f"--out {out_dir}: not a writable folder ({exc.strerror or exc})") from None


def make_toy(out_dir: str | Path, quick: bool = False, seed: object = 0,
             config: ToyConfig | None = None) -> dict:
    """Build the whole toy world into ``out_dir``; return the contents of ``toy.json``."""
    from llmjp_ckpt.toy import signals as sig
    from llmjp_ckpt.toy import tokenizer as tk
    from llmjp_ckpt.toy.train import train

    seed = parse_seed(seed)
    cfg = config or (quick_config() if quick else default_config())
    out = Path(out_dir)
    check_writable(out)
    atomic.clean_temporaries(out)

    clock = [time.perf_counter()]
    seconds: dict[str, float] = {}

    def lap(name: str) -> None:
        clock.append(time.perf_counter())
        seconds[name] = round(clock[-1] - clock[-2], 2)

    docs = Generator(seed, cfg.corpus).documents()
    counts = write_corpus(docs, out / "corpus")
    lap("corpus")

    delimited = [d.delimited(tk.DELIMITER) for d in docs]
    with atomic.atomic_dir(out / "tokenizer") as tmp:
        if cfg.tokenizer == "byte-bpe":
            tk.save_hf_byte_bpe(tk.build_byte_bpe(delimited, cfg.vocab_size), tmp)
        else:
            tk.save_hf_tokenizer(tk.build_unigram(delimited, cfg.vocab_size), tmp)
    n_tok = len(tk.load_hf_tokenizer(out / "tokenizer"))
    vocab = tk.padded_vocab_size(n_tok)
    sp = tk.toy_encoder(out / "tokenizer")
    atomic.write_json(out / "concepts.json", concepts_record(docs, out / "tokenizer"))
    lap("tokenizer")

    import torch

    # A rerun into the same folder must not leave checkpoints of another schedule behind
    # (the registry discovers steps from the iter_* folders).
    for old in sorted((out / "checkpoints").glob("iter_*")):
        if old.name not in {step_dir(s) for s in cfg.train.steps}:
            shutil.rmtree(old)
    stream = torch.tensor([t for d in docs for t in [1] + sp.encode(d.text)], dtype=torch.long)
    rows = train(stream, cfg.shape, cfg.train, vocab, out / "checkpoints", out / "tokenizer", seed)
    lap("train")
    ckpts = [(r["step"], out / "checkpoints" / step_dir(r["step"])) for r in rows]
    if cfg.signals:
        for row, s in zip(rows, sig.measure_all(ckpts, cfg.layer, out / "tokenizer",
                                                  seed, cfg.n_translation, cfg.per_form)):
            row["signals"] = {k: v for k, v in s.items() if k != "step"}
        lap("signals")
    atomic.write_json(out / "train_log.json", {"checkpoints": rows})
    info = {
        "seed": seed,
        "quick": quick,
        "steps": [r["step"] for r in rows],
        "layer": cfg.layer,
        "hook": study_layer_hook(cfg.layer, cfg.shape.layers),
        "n_layers": cfg.shape.layers,
        "tokenizer": cfg.tokenizer,
        "tokenizer_size": n_tok,
        "model_vocab_size": vocab,
        "corpus_docs": counts,
        "corpus_tokens": int(stream.numel()),
        "config": dataclasses.asdict(cfg),
        "seconds": seconds,  # wall time per phase (the only part that differs between runs)
    }
    atomic.write_json(out / "toy.json", info)
    if cfg.signals:  # the planted truth per checkpoint (reads toy.json)
        from llmjp_ckpt.toy.timeline import write_timeline

        write_timeline(out)
    return info


def concepts_record(docs, tokenizer_dir: Path) -> dict:
    """The planted truth: every form with its concept, category, language, count and pieces.

    ``pieces`` is the form's tokenisation after a space or at the start of a text (``▁cat``,
    ``▁猫``; byte-level BPE: `` cat``), ``pieces_attached`` right after other text (``猫`` in
    ``…。猫は``, ``cat`` in ``(cat)``). SentencePiece pieces are raw; byte-level BPE pieces are
    their real text (:meth:`llmjp_ckpt.tokens.TokenText.piece_text`), never the byte alphabet.
    """
    from llmjp_ckpt.tokens import TokenText
    from llmjp_ckpt.toy import tokenizer as tk

    after_space, attached = tk.toy_encoder(tokenizer_dir), tk.attached_encoder(tokenizer_dir)
    tt = TokenText.load(tokenizer_dir)
    sentencepiece = tt.kind == "sentencepiece"

    def ids_of(enc, text: str) -> list[int]:
        return enc.encode(text if sentencepiece or enc is attached else " " + text)

    def pieces_of(ids: list[int]) -> list[str]:
        return [tt.piece(i) if sentencepiece else tt.piece_text(i) for i in ids]

    seen: dict[str, int] = {}
    for d in docs:
        for text, cid, lang in d.segments:
            if cid and lang != TAG:
                seen[f"{lang}:{text}"] = seen.get(f"{lang}:{text}", 0) + 1
    forms = []
    for c in CONCEPTS:
        for lang, form in c.forms:
            forms.append({
                "form": form, "language": lang, "concept": c.id, "category": c.category,
                "variant": lang == "ja" and form != c.ja[0],
                "count": seen.get(f"{lang}:{form}", 0),
                "pieces": pieces_of(ids_of(after_space, form)),
                "ids": ids_of(after_space, form),
                "pieces_attached": pieces_of(ids_of(attached, form)),
                "ids_attached": ids_of(attached, form),
            })
    return {
        "concepts": [{"id": c.id, "category": c.category, "ja": list(c.ja), "en": c.en, "tag": TAG_OF[c.id]}
                     for c in CONCEPTS],
        "facts": {"colour_of": COLOUR_OF, "home_of": HOME_OF, "likes": LIKES},
        "forms": forms,
    }
