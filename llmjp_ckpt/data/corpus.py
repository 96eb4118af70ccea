"""Bilingual corpus windows: llm-jp-corpus v3 shards -> RUN/data/{train,val,test}/.

One pass, streamed: documents are read line by line, tokenised in small batches and written
as Arrow records as they come, so memory does not grow with the corpus.

- A window is ``[BOS] + 64 tokens`` of one document (``context_size`` 65): the study's
  ``first`` mode takes the first window of each document that has one; ``pack`` takes every
  whole window of each document. A window never holds a second BOS or a second document.
- Each document goes to train / val / test by a seeded hash of (language, shard, line): the
  split is disjoint and identical for the same seed whatever the reading order.
- The languages are balanced by tokens: each gets ``token_budget / n_languages`` trained
  tokens; when one runs short every split is cut to the shortest language and a warning
  says so (also written to ``RUN/data/data_info.json``).
- Each split is a ``datasets.save_to_disk`` folder with columns ``input_ids`` (65 ints, BOS
  first) and ``language``; the languages alternate row by row.
- The train split is shuffled (``shuffle``, seeded by ``seed``): each language's kept windows
  are put in a seeded random order before the languages are interleaved, so a training batch
  mixes documents from the whole corpus instead of a run of consecutive ones (SAELens reads
  the dataset in order and its mixing buffer holds only a few batches). The permutation is
  of window indices (an indices mapping that ``save_to_disk`` writes out batch by batch), so
  memory holds one integer a window, never the windows. Val and test stay in reading order.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import logging
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from llmjp_ckpt import atomic
from llmjp_ckpt.data.config import DataConfig, build
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder

log = logging.getLogger(__name__)
SPLITS = ("train", "val", "test")
STAGE = "data"
INFO_FILE = "data_info.json"


@dataclass
class Doc:
    """One document and where it came from (for the split hash and error messages)."""

    text: str
    key: str


@dataclass
class Counts:
    """What one language's pass saw."""

    docs: int = 0
    short_docs: int = 0
    bos_inside: int = 0
    skipped_lines: int = 0
    windows: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SPLITS})

    @property
    def total_windows(self) -> int:
        return sum(self.windows.values())


def shard_files(cfg: DataConfig, lang: str) -> list[Path]:
    """The ``train_*.jsonl[.gz]`` shards of one language, sorted; none is a :class:`UserError`."""
    assert cfg.corpus_root is not None
    folder = Path(cfg.corpus_root) / cfg.languages[lang]
    files = sorted(p for p in folder.glob("train_*.jsonl*") if p.name.endswith((".jsonl", ".jsonl.gz")))
    if not files:
        raise UserError(
            f"{folder}: no train_*.jsonl[.gz] shards for language {lang!r}: expected llm-jp-corpus v3 layout"
        )
    return files


def _bad_line(cfg: DataConfig, counts: Counts, message: str) -> None:
    if cfg.on_bad_line == "fail":
        raise UserError(f"{message} (set on_bad_line: skip to skip and count such lines)")
    counts.skipped_lines += 1
    log.warning("skipped %s", message)


def read_jsonl(path: Path, cfg: DataConfig, counts: Counts) -> Iterator[Doc]:
    """Documents of one shard, one line at a time; bad lines fail or are skipped by ``on_bad_line``."""
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:  # type: ignore[operator]
        for lineno, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                _bad_line(
                    cfg,
                    counts,
                    f"{path}:{lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column {exc.start + 1})",
                )
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                _bad_line(cfg, counts, f"{path}:{lineno}: malformed JSON line ({exc.msg} at column {exc.colno})")
                continue
            text = obj.get(cfg.text_field) if isinstance(obj, dict) else None
            if not isinstance(text, str):
                _bad_line(cfg, counts, f"{path}:{lineno}: field {cfg.text_field!r} missing or not a string")
                continue
            yield Doc(text=text, key=f"{path.name}:{lineno}")


def iter_documents(cfg: DataConfig, lang: str, counts: Counts) -> Iterator[Doc]:
    """All documents of one language, streamed from local shards or a Hugging Face dataset."""
    if cfg.hf:
        import datasets

        ds = datasets.load_dataset(cfg.languages[lang], split="train", streaming=True)
        for i, row in enumerate(ds):
            text = row.get(cfg.text_field)
            if isinstance(text, str):
                yield Doc(text=text, key=f"hf:{i}")
            else:
                _bad_line(
                    cfg,
                    counts,
                    f"{cfg.languages[lang]} row {i}: field {cfg.text_field!r} missing or not a string",
                )
        return
    for path in shard_files(cfg, lang):
        yield from read_jsonl(path, cfg, counts)


def split_of(seed: int, lang: str, key: str, ratio: list[int]) -> str:
    """The split of one document: a seeded hash, so the same for the same seed and document."""
    h = hashlib.blake2b(f"{seed}\0{lang}\0{key}".encode(), digest_size=8).digest()
    u = int.from_bytes(h, "big") / 2**64 * sum(ratio)
    return SPLITS[0] if u < ratio[0] else SPLITS[1] if u < ratio[0] + ratio[1] else SPLITS[2]


def doc_windows(ids: list[int], bos: int, cfg: DataConfig) -> list[list[int]]:
    """The windows ``[BOS] + n`` tokens of one tokenised document (no BOS added inside)."""
    n = cfg.trained_per_window
    count = 1 if cfg.windows == "first" else len(ids) // n
    return [[bos] + ids[i * n:(i + 1) * n] for i in range(min(count, len(ids) // n))]


def iter_windows(cfg: DataConfig, lang: str, tokenizer: Any, counts: Counts) -> Iterator[tuple[str, list[int]]]:
    """``(split, window)`` pairs of one language, streamed in batches of ``batch_docs``."""
    bos = tokenizer.bos_token_id
    n = cfg.trained_per_window

    def flush(batch: list[Doc]) -> Iterator[tuple[str, list[int]]]:
        texts = [d.text[: cfg.text_chars] if cfg.windows == "first" else d.text for d in batch]
        ids = tokenizer(texts, add_special_tokens=False)["input_ids"]
        for doc, toks in zip(batch, ids):
            if cfg.windows == "first" and len(toks) < n and len(doc.text) > cfg.text_chars:
                toks = tokenizer(doc.text, add_special_tokens=False)["input_ids"]
            wins = doc_windows(toks, bos, cfg)
            if not wins:
                counts.short_docs += 1
                continue
            split = split_of(cfg.seed, lang, doc.key, cfg.split)
            for w in wins:
                if bos in w[1:]:
                    counts.bos_inside += 1
                    continue
                yield split, w

    batch: list[Doc] = []
    for doc in iter_documents(cfg, lang, counts):
        counts.docs += 1
        batch.append(doc)
        if len(batch) >= cfg.batch_docs:
            yield from flush(batch)
            batch = []
    if batch:
        yield from flush(batch)


def _load_tokenizer(path: str) -> Any:
    from llmjp_ckpt.models.adapter import load_tokenizer

    if not Path(path).exists():
        raise UserError(f"tokenizer: {path} does not exist: expected a tokenizer or checkpoint folder")
    return load_tokenizer(path)


def window_order(cfg: DataConfig, split: str, lang: str, n: int) -> Any:
    """The order of one language's first ``n`` windows of ``split``: a seeded permutation for a
    shuffled train split (the same for the same seed and language), reading order otherwise."""
    import numpy as np

    if split != "train" or not cfg.shuffle:
        return range(n)
    lang_key = int.from_bytes(hashlib.blake2b(lang.encode(), digest_size=4).digest(), "big")
    return np.random.default_rng([cfg.seed, lang_key]).permutation(n)


def shuffle_record(cfg: DataConfig) -> dict[str, Any]:
    """How the train split was ordered (for data_info.json and the manifest)."""
    return {"shuffled": cfg.shuffle, "seed": cfg.seed,
            "method": "seeded permutation of each language's windows, then interleaved"
            if cfg.shuffle else "reading order"}


def build_splits(cfg: DataConfig, out: Path) -> dict[str, Any]:
    """Write ``out/{train,val,test}`` and return what was done (counts, shortfall)."""
    import datasets
    from datasets.arrow_writer import ArrowWriter

    tokenizer = _load_tokenizer(cfg.tokenizer)
    langs = list(cfg.languages)
    per_lang = cfg.token_budget // cfg.trained_per_window // len(langs)
    if per_lang < 1:
        raise UserError(f"token_budget={cfg.token_budget}: too small for one window per language")
    features = datasets.Features(
        {
            "input_ids": datasets.Sequence(datasets.Value("int32")),
            "language": datasets.Value("string"),
        }
    )
    parts = out / "_parts"
    parts.mkdir(parents=True)
    counts: dict[str, Counts] = {}
    for lang in langs:
        c = counts[lang] = Counts()
        writers = {s: ArrowWriter(features=features, path=str(parts / f"{s}-{lang}.arrow")) for s in SPLITS}
        bar = tqdm(total=per_lang, desc=f"windows [{lang}]", unit="win")
        try:
            for split, win in iter_windows(cfg, lang, tokenizer, c):
                writers[split].write({"input_ids": win, "language": lang})
                c.windows[split] += 1
                bar.update(1)
                if c.total_windows >= per_lang:
                    break
        finally:
            bar.close()
            for w in writers.values():
                w.finalize()
                w.close()
        if c.total_windows == 0:
            raise UserError(
                f"language {lang!r}: no document has at least {cfg.context_size} tokens "
                f"(BOS + {cfg.trained_per_window}) among {c.docs} documents: nothing to train on"
            )
    shortfall = {lang: c.total_windows for lang, c in counts.items() if c.total_windows < per_lang}
    if shortfall:
        msg = (
            f"WARNING: language(s) {', '.join(shortfall)} ran short of the budget of {per_lang} windows "
            f"({per_lang * cfg.trained_per_window} tokens) each: got {shortfall}; every split is cut to "
            "the shortest language to keep 50/50 by tokens"
        )
        print(msg, file=sys.stderr)
    kept: dict[str, int] = {}
    for split in SPLITS:
        n = min(counts[lang].windows[split] for lang in langs)
        kept[split] = n * len(langs)
        pieces = [datasets.Dataset.from_file(str(parts / f"{split}-{lang}.arrow"))
                  .select(window_order(cfg, split, lang, n)) for lang in langs]
        ds = datasets.interleave_datasets(pieces) if n else pieces[0]
        ds.save_to_disk(str(out / split))
        del ds, pieces
    shutil.rmtree(parts)
    return {
        "windows_per_split": kept,
        "trained_tokens_per_split": {s: k * cfg.trained_per_window for s, k in kept.items()},
        "budget_windows_per_language": per_lang,
        "shortfall": shortfall,
        "languages": {
            lang: {
                "documents_read": c.docs,
                "documents_too_short": c.short_docs,
                "windows_with_bos_inside_dropped": c.bos_inside,
                "lines_skipped": c.skipped_lines,
                "windows": c.windows,
            }
            for lang, c in counts.items()
        },
        "bos_token_id": tokenizer.bos_token_id,
        "context_size": cfg.context_size,
        "train_shuffle": shuffle_record(cfg),
    }


def as_config(config: DataConfig | dict[str, Any] | str | Path) -> DataConfig:
    """Accept a :class:`DataConfig`, a mapping or a YAML path."""
    if isinstance(config, DataConfig):
        return config
    if isinstance(config, dict):
        return build(DataConfig, config, "data config")
    return DataConfig.from_yaml(config)


def prepare_data(config: DataConfig | dict[str, Any] | str | Path, run_dir: str | Path, force: bool = False) -> Path:
    """Build RUN/data/ (skipped when done with the same config); return its path."""
    cfg = as_config(config)
    rf = RunFolder(run_dir)
    out = rf.path("data")
    with rf.stage(STAGE, cfg, force=force, outputs=[out / s for s in SPLITS]) as st:
        if st.skipped:
            return out
        with atomic.atomic_dir(out) as tmp:
            info = build_splits(cfg, tmp)
            atomic.write_json(tmp / INFO_FILE, info)
        st.info.update(windows=info["windows_per_split"], shortfall=info["shortfall"],
                       train_shuffle=info["train_shuffle"])
    return out


def load_split(run_dir: str | Path, split: str) -> Any:
    """One prepared split as a ``datasets.Dataset`` (memory-mapped)."""
    import datasets

    path = Path(run_dir) / "data" / split
    if not path.is_dir():
        raise UserError(f"{path}: prepared split not found: run `llmjp-ckpt prepare-data` first")
    return datasets.load_from_disk(str(path))
