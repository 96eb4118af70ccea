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
from llmjp_ckpt.toy.config import ToyConfig, default_config, parse_seed, quick_config
from llmjp_ckpt.toy.corpus import Generator, write_corpus
from llmjp_ckpt.toy.lexicon import COLOUR_OF, CONCEPTS, HOME_OF, LIKES


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

    model_bytes = tk.build_unigram([d.delimited(tk.DELIMITER) for d in docs], cfg.vocab_size)
    with atomic.atomic_dir(out / "tokenizer") as tmp:
        tk.save_hf_tokenizer(model_bytes, tmp)
    n_tok = len(tk.load_hf_tokenizer(out / "tokenizer"))
    vocab = tk.padded_vocab_size(n_tok)
    atomic.write_json(out / "concepts.json", concepts_record(docs, model_bytes))
    lap("tokenizer")

    import sentencepiece as spm
    import torch

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    # A rerun into the same folder must not leave checkpoints of another schedule behind
    # (the registry discovers steps from the iter_* folders).
    for old in sorted((out / "checkpoints").glob("iter_*")):
        if old.name not in {f"iter_{s:07d}" for s in cfg.train.steps}:
            shutil.rmtree(old)
    stream = torch.tensor([t for d in docs for t in [1] + sp.encode(d.text)], dtype=torch.long)
    rows = train(stream, cfg.shape, cfg.train, vocab, out / "checkpoints", out / "tokenizer", seed)
    lap("train")
    ckpts = [(r["step"], out / "checkpoints" / f"iter_{r['step']:07d}") for r in rows]
    if cfg.signals:
        for row, s in zip(rows, sig.measure_all(ckpts, cfg.layer, out / "tokenizer" / "tokenizer.model",
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
        "tokenizer_size": n_tok,
        "model_vocab_size": vocab,
        "corpus_docs": counts,
        "corpus_tokens": int(stream.numel()),
        "config": dataclasses.asdict(cfg),
        "seconds": seconds,  # wall time per phase (the only part that differs between runs)
    }
    atomic.write_json(out / "toy.json", info)
    return info


def concepts_record(docs, model_bytes: bytes) -> dict:
    """The planted truth: every form with its concept, category, language, count and pieces.

    ``pieces`` is the form's tokenisation after a space or at the start of a text (``▁cat``,
    ``▁猫``); ``pieces_attached`` right after other text (``猫`` in ``…。猫は``, ``cat`` in
    ``(cat)``).
    """
    import sentencepiece as spm
    from sentencepiece import sentencepiece_model_pb2 as pb

    sp = spm.SentencePieceProcessor(model_proto=model_bytes)
    proto = pb.ModelProto()
    proto.ParseFromString(model_bytes)
    proto.normalizer_spec.add_dummy_prefix = False
    sp_attached = spm.SentencePieceProcessor(model_proto=proto.SerializeToString())
    seen: dict[str, int] = {}
    for d in docs:
        for text, cid, lang in d.segments:
            if cid:
                seen[f"{lang}:{text}"] = seen.get(f"{lang}:{text}", 0) + 1
    forms = []
    for c in CONCEPTS:
        for lang, form in c.forms:
            forms.append({
                "form": form, "language": lang, "concept": c.id, "category": c.category,
                "variant": lang == "ja" and form != c.ja[0],
                "count": seen.get(f"{lang}:{form}", 0),
                "pieces": sp.encode(form, out_type=str),
                "ids": sp.encode(form),
                "pieces_attached": sp_attached.encode(form, out_type=str),
                "ids_attached": sp_attached.encode(form),
            })
    return {
        "concepts": [{"id": c.id, "category": c.category, "ja": list(c.ja), "en": c.en} for c in CONCEPTS],
        "facts": {"colour_of": COLOUR_OF, "home_of": HOME_OF, "likes": LIKES},
        "forms": forms,
    }
