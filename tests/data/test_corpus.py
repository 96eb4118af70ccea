"""Corpus windows: splits, balance, 64 trained positions, no BOS inside, streaming, bad input."""

from __future__ import annotations

import gzip
import itertools
import json
import tracemalloc
from pathlib import Path

import pytest

from llmjp_ckpt.data import corpus
from llmjp_ckpt.data.config import DataConfig
from llmjp_ckpt.errors import UserError
from tests.helpers import build_corpus, data_config
from tests.model_builders import build_tokenizer


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("tok")
    build_tokenizer(out).save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def corpus_root(tmp_path_factory) -> Path:
    return build_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def prepared(tmp_path_factory, corpus_root, tok_dir) -> Path:
    run = tmp_path_factory.mktemp("run")
    corpus.prepare_data(data_config(corpus_root, tok_dir), run)
    return run


def rows(run: Path, split: str) -> list[dict]:
    return list(corpus.load_split(run, split))


def test_windows_have_bos_first_and_64_trained_positions(prepared, tok_dir):
    from llmjp_ckpt.models.adapter import load_tokenizer

    bos = load_tokenizer(str(tok_dir)).bos_token_id
    for split in corpus.SPLITS:
        for r in rows(prepared, split):
            assert len(r["input_ids"]) == 65
            assert r["input_ids"][0] == bos
            assert bos not in r["input_ids"][1:]
            assert r["language"] in ("ja", "en")


def test_languages_balanced_by_tokens_in_every_split(prepared):
    for split in corpus.SPLITS:
        langs = [r["language"] for r in rows(prepared, split)]
        assert langs.count("ja") == langs.count("en")
    assert len(rows(prepared, "train")) > len(rows(prepared, "val"))


def test_splits_disjoint_and_identical_for_same_seed(prepared, corpus_root, tok_dir, tmp_path):
    sets = {s: {tuple(r["input_ids"]) for r in rows(prepared, s)} for s in corpus.SPLITS}
    assert not sets["train"] & sets["val"] and not sets["train"] & sets["test"] and not sets["val"] & sets["test"]
    again = tmp_path / "again"
    corpus.prepare_data(data_config(corpus_root, tok_dir), again)
    for s in corpus.SPLITS:
        assert [r["input_ids"] for r in rows(again, s)] == [r["input_ids"] for r in rows(prepared, s)]
    other = tmp_path / "other"
    corpus.prepare_data(data_config(corpus_root, tok_dir, seed=1), other)
    assert {tuple(r["input_ids"]) for r in rows(other, "val")} != sets["val"]


def test_rerun_skips_and_manifest_records(prepared, corpus_root, tok_dir):
    from llmjp_ckpt.runfolder import RunFolder

    st = RunFolder(prepared).stage_record("data")
    assert st["status"] == "done"
    before = (prepared / "data" / "train").stat().st_mtime_ns
    corpus.prepare_data(data_config(corpus_root, tok_dir), prepared)
    assert (prepared / "data" / "train").stat().st_mtime_ns == before
    info = json.loads((prepared / "data" / "data_info.json").read_text())
    assert info["languages"]["ja"]["documents_too_short"] > 0


def test_pack_mode_gives_more_windows(corpus_root, tok_dir, tmp_path, prepared):
    corpus.prepare_data(data_config(corpus_root, tok_dir, windows="pack", token_budget=64 * 10_000), tmp_path)
    assert len(rows(tmp_path, "train")) > len(rows(prepared, "train"))


def test_short_language_is_reported_and_balance_kept(tmp_path, tok_dir, capsys):
    root = build_corpus(tmp_path / "c", n_docs={"ja": 40, "en": 120})
    corpus.prepare_data(data_config(root, tok_dir, token_budget=64 * 200), tmp_path / "run")
    assert "ran short" in capsys.readouterr().err
    for split in corpus.SPLITS:
        langs = [r["language"] for r in rows(tmp_path / "run", split)]
        assert langs.count("ja") == langs.count("en")


def test_streaming_memory_does_not_grow_with_corpus(tmp_path, tok_dir):
    from llmjp_ckpt.models.adapter import load_tokenizer

    tok = load_tokenizer(str(tok_dir))
    peaks = []
    for n in (300, 1200):
        root = build_corpus(tmp_path / f"c{n}", n_docs={"ja": n}, short_every=0, words=(60, 80))
        cfg = DataConfig(**data_config(root, tok_dir, languages={"ja": "ja/ja_wiki"}))
        tracemalloc.start()
        count = sum(1 for _ in corpus.iter_windows(cfg, "ja", tok, corpus.Counts()))
        peaks.append(tracemalloc.get_traced_memory()[1])
        tracemalloc.stop()
        assert count == n
    assert peaks[1] < 1.5 * peaks[0]


# ---- bad input: one clear line, nothing half-written ----------------------------------------

def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as fh:
        fh.write(data)


def _corpus_with_bad_line(tmp_path: Path, bad: bytes) -> Path:
    root = build_corpus(tmp_path / "c", n_docs={"ja": 30, "en": 30})
    shard = root / "en/en_wiki/train_0.jsonl.gz"
    lines = gzip.decompress(shard.read_bytes()).splitlines()
    lines.insert(3, bad)
    _write(shard, b"\n".join(lines) + b"\n")
    return root


@pytest.mark.parametrize(
    "bad, expect",
    [(b'{"text": "broken', "malformed JSON line"), (b'{"text": "caf\xe9"}', "not valid UTF-8")],
)
def test_bad_line_fails_with_file_and_line_or_is_skipped(tmp_path, tok_dir, bad, expect):
    root = _corpus_with_bad_line(tmp_path, bad)
    with pytest.raises(UserError, match=rf"train_0\.jsonl\.gz:4: {expect}"):
        corpus.prepare_data(data_config(root, tok_dir), tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()
    corpus.prepare_data(data_config(root, tok_dir, on_bad_line="skip"), tmp_path / "run2")
    info = json.loads((tmp_path / "run2" / "data" / "data_info.json").read_text())
    assert info["languages"]["en"]["lines_skipped"] == 1


def test_all_documents_too_short(tmp_path, tok_dir):
    root = build_corpus(tmp_path / "c", words=(2, 4))
    with pytest.raises(UserError, match="no document has at least 65 tokens"):
        corpus.prepare_data(data_config(root, tok_dir), tmp_path / "run")
    assert not (tmp_path / "run" / "data").exists()


def test_language_missing(tmp_path, tok_dir):
    root = build_corpus(tmp_path / "c", n_docs={"ja": 20})
    with pytest.raises(UserError, match="no train_.*shards for language 'en'"):
        corpus.prepare_data(data_config(root, tok_dir), tmp_path / "run")


def test_unknown_yaml_field(tmp_path):
    p = tmp_path / "d.yaml"
    p.write_text("tokenizer: x\ncorpus_root: y\ntoken_budgett: 5\n")
    with pytest.raises(UserError, match="unknown field 'token_budgett'"):
        DataConfig.from_yaml(p)


def test_cli_exit_code_2(tmp_path):
    from llmjp_ckpt.cli import main

    p = tmp_path / "d.yaml"
    p.write_text("tokenizer: x\ncorpus_root: y\nsplit: [1, 1]\n")
    assert main(["prepare-data", "--config", str(p), "--run", str(tmp_path / "run")]) == 2


def test_hugging_face_dataset_input_gives_the_same_windows(prepared, corpus_root, tok_dir, tmp_path):
    """``hf: true`` streams a dataset through ``datasets.load_dataset`` (here a local data folder)."""
    from llmjp_ckpt.models.adapter import load_tokenizer

    local = DataConfig(**data_config(corpus_root, tok_dir))
    hf_cfg = DataConfig(**data_config(corpus_root, tok_dir, hf=True, corpus_root=None,
                                      languages={k: str(corpus_root / v) for k, v in local.languages.items()}))
    corpus.prepare_data(hf_cfg, tmp_path)
    got = {(r["language"], tuple(r["input_ids"])) for s in ("train", "val", "test") for r in rows(tmp_path, s)}
    tok = load_tokenizer(str(tok_dir))
    universe = {(lang, tuple(w)) for lang in local.languages
                for _, w in corpus.iter_windows(local, lang, tok, corpus.Counts())}
    want = {(r["language"], tuple(r["input_ids"])) for s in ("train", "val", "test") for r in rows(prepared, s)}
    # The same documents and windows; only the seeded split keys (and so the 50/50 cut) differ.
    assert got and got <= universe
    assert len(got) >= 0.8 * len(want)


# ---- the seeded train shuffle ---------------------------------------------------------------

def _doc_index(tok, window: list[int]) -> int:
    """The document's number: build_corpus starts every document with ``f"{i} "``."""
    return int(tok.decode(window[1:8]).split()[0])


def _mean_batch_spread(docs: list[int], batch: int) -> float:
    import numpy as np

    chunks = [docs[i:i + batch] for i in range(0, len(docs) - batch + 1, batch)]
    return float(np.mean([np.std(c) for c in chunks]))


@pytest.fixture(scope="module")
def shuffle_runs(tmp_path_factory, tok_dir):
    root = build_corpus(tmp_path_factory.mktemp("c"), n_docs={"ja": 300, "en": 300}, short_every=0)
    runs = {}
    for name, over in {"shuffled": {}, "same": {}, "reading": {"shuffle": False},
                       "seed1": {"seed": 1}}.items():
        runs[name] = tmp_path_factory.mktemp(name)
        corpus.prepare_data(data_config(root, tok_dir, token_budget=64 * 10_000, **over),
                            runs[name])
    return runs


def test_train_batches_mix_documents_like_a_random_permutation(shuffle_runs, tok_dir):
    import numpy as np

    from llmjp_ckpt.models.adapter import load_tokenizer

    tok = load_tokenizer(str(tok_dir))
    batch = 16  # windows a batch (SAELens reads the split in order)
    docs = {k: [_doc_index(tok, r["input_ids"]) for r in rows(shuffle_runs[k], "train")]
            for k in ("shuffled", "reading")}
    assert sorted(docs["shuffled"]) == sorted(docs["reading"]) and len(docs["shuffled"]) > 400
    rng = np.random.default_rng(123)
    random_spread = np.mean([_mean_batch_spread(list(rng.permutation(docs["reading"])), batch)
                             for _ in range(20)])
    shuffled = _mean_batch_spread(docs["shuffled"], batch)
    reading = _mean_batch_spread(docs["reading"], batch)
    print(f"mean batch doc-index spread: shuffled {shuffled:.1f}, random {random_spread:.1f}, "
          f"reading order {reading:.1f}")
    assert abs(shuffled - random_spread) < 0.15 * random_spread, (shuffled, random_spread)
    assert reading < 0.2 * random_spread, (reading, random_spread)
    # Still 50/50 in every batch: the languages alternate row by row.
    langs = [r["language"] for r in rows(shuffle_runs["shuffled"], "train")]
    assert all(a != b for a, b in itertools.pairwise(langs))


def test_train_shuffle_is_seeded_and_recorded(shuffle_runs):
    from llmjp_ckpt.runfolder import RunFolder

    order = {k: [r["input_ids"] for r in rows(run, "train")] for k, run in shuffle_runs.items()}
    assert order["same"] == order["shuffled"]
    assert order["seed1"] != order["shuffled"]
    for split in ("val", "test"):  # only train is shuffled
        assert rows(shuffle_runs["shuffled"], split) == rows(shuffle_runs["reading"], split)
    st = RunFolder(shuffle_runs["shuffled"]).stage_record("data")
    assert st["config"]["seed"] == 0 and st["config"]["shuffle"] is True
    assert st["train_shuffle"]["shuffled"] is True and st["train_shuffle"]["seed"] == 0
    reading = RunFolder(shuffle_runs["reading"]).stage_record("data")
    assert reading["train_shuffle"]["shuffled"] is False
    info = json.loads((shuffle_runs["shuffled"] / "data" / "data_info.json").read_text())
    assert info["train_shuffle"]["seed"] == 0


def test_negative_seed_refused(tmp_path):
    with pytest.raises(UserError, match="seed=-1: expected a non-negative integer"):
        DataConfig(tokenizer="x", corpus_root="y", seed=-1)
