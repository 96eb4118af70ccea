"""Batched labelling of many features at once: language (paper and script rules) and granularity.

The per-feature functions (``language.paper_language``, ``language.script_language``,
``granularity.classify``) walk every ``(token, activation)`` pair in Python; a 32,768-latent SAE
with 50 examples of 64 tokens each is 100M pairs. Here a chunk of features is flattened once into
numpy arrays (token ids into a table of distinct token texts, activations, window offsets); the
per-window work (max token, the paper rule's quantisation, the script rule's votes) is array
arithmetic, per-token properties are computed once per distinct text, and only the work on each
feature's ≤ 50 max tokens stays in Python (``granularity.stats_from_max_tokens``, shared with
the per-feature path). :func:`label_features` with ``workers=2`` spreads chunks over forked
processes. The labels equal the per-feature functions' exactly (``tests/labels/test_batch.py``
checks all 298 peer features and random windows); speed is in ``BENCHMARKS.md`` (L1).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np

from llmjp_ckpt.chars import majority_language
from llmjp_ckpt.labels import granularity as gr
from llmjp_ckpt.labels.language import (
    paper_language,
    paper_token_class,
    script_language,
    token_script,
)

_SCRIPT = {"en": 0, "ja": 1, "neutral": 2}
_PAPER = {"en": 0, "ja": 1, "defer": 2}  # defer: digits-only, the class of the token before


@dataclass(frozen=True)
class FeatureLabels:
    """The labels of one feature (what ``features.parquet`` stores per latent)."""

    language_paper: str
    language_script: str
    granularity: str
    confidence: float


class _Vocab(dict):
    """Token text -> (script code, paper-rule code), computed once per distinct text."""

    def __missing__(self, text: str) -> tuple[int, int]:
        # the paper rule's class of a lone token; a digits-only token defers to the one before
        # it, so it classes differently in front of an English and a Japanese token
        en, ja = paper_token_class([(text, 0), ("a", 0)], 0), paper_token_class(
            [(text, 0), ("あ", 0)], 0)
        codes = (_SCRIPT[token_script(text)], _PAPER[en] if en == ja else _PAPER["defer"])
        self[text] = codes
        return codes


def _first_max(values: np.ndarray, starts: np.ndarray, wid: np.ndarray) -> np.ndarray:
    """Index (into ``values``) of each window's first maximum."""
    wmax = np.maximum.reduceat(values, starts)
    idx = np.flatnonzero(values == wmax[wid])
    w = wid[idx]
    keep = np.ones(len(idx), dtype=bool)
    keep[1:] = w[1:] != w[:-1]
    return idx[keep]


def label_chunk(features: Sequence[Sequence[Sequence]], backend: gr.RuleBackend | None = None,
                vocab: _Vocab | None = None) -> list[FeatureLabels]:
    """Labels of ``features`` (each a list of windows of ``[token_text, activation]`` pairs)."""
    backend = backend or gr.default_backend()
    vocab = vocab if vocab is not None else _process_vocab()
    wins = [[w for w in ex if len(w) > 0] for ex in features]
    out: list[FeatureLabels | None] = [None] * len(features)
    live = [k for k, ws in enumerate(wins) if ws]
    for k in range(len(features)):
        if not wins[k]:  # no example: what the per-feature functions say about nothing
            lab, conf = backend.classify([])
            out[k] = FeatureLabels(paper_language([]), script_language([]), lab, conf)
    if not live:
        return out  # type: ignore[return-value]
    flat_w = [w for k in live for w in wins[k]]
    n_win = np.fromiter((len(ws) for k in live for ws in [wins[k]]), np.int64, len(live))
    lens = np.fromiter(map(len, flat_w), np.int64, len(flat_w))
    pairs = list(chain.from_iterable(flat_w))  # (zip(*pairs) would build an iterator a pair)
    a = np.fromiter(map(itemgetter(1), pairs), np.float64, len(pairs))
    W, nf = len(flat_w), len(live)
    starts = np.zeros(W, np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    wid = np.repeat(np.arange(W), lens)
    wfeat = np.repeat(np.arange(nf), n_win)
    tfeat = wfeat[wid]
    fstart = np.zeros(nf, np.int64)
    np.cumsum(np.add.reduceat(lens, np.r_[0, np.cumsum(n_win)[:-1]])[:-1], out=fstart[1:])

    def codes(positions: np.ndarray, k: int) -> np.ndarray:
        """Script (k=0) or paper-rule (k=1) codes of the tokens at ``positions`` only: text
        look-ups are the costly part, and only active and max tokens need them."""
        return np.fromiter((vocab[pairs[i][0]][k] for i in positions.tolist()), np.int8,
                           len(positions))

    # --- script rule (language.script_scores): activation-weighted votes of active tokens
    c = np.maximum(a, 0.0)
    ctop = np.maximum.reduceat(c, starts)
    valid = ctop > 0
    act = np.flatnonzero((c >= 0.5 * ctop[wid]) & valid[wid])
    act_script = codes(act, 0)
    vpos = act[act_script != 2]
    voted = np.zeros(W, bool)
    voted[wid[vpos]] = True
    pos, wts, scr = vpos.astype(np.float64), c[vpos], act_script[act_script != 2]
    lonely = np.flatnonzero(valid & ~voted)  # all active tokens neutral: nearest scripted one
    if len(lonely):
        cfirst = _first_max(c, starts, wid)
        fpos, fw, fs = [], [], []
        for w in lonely.tolist():
            s0, i, n = int(starts[w]), int(cfirst[w] - starts[w]), int(lens[w])
            for j in [*range(i - 1, -1, -1), *range(i + 1, n)]:
                sj = vocab[pairs[s0 + j][0]][0]
                if sj != 2:
                    fpos.append(s0 + n - 0.5)  # after the window's own tokens, in order
                    fw.append(ctop[w])
                    fs.append(sj)
                    break
        if fpos:
            pos = np.concatenate([pos, np.asarray(fpos, np.float64)])
            wts = np.concatenate([wts, np.asarray(fw)])
            scr = np.concatenate([scr, np.asarray(fs, np.int8)])
    order = np.argsort(pos, kind="stable")  # the per-feature function's order of additions
    vfeat = tfeat[pos[order].astype(np.int64)]
    wts, scr = wts[order], scr[order]
    v_en = np.bincount(vfeat[scr == 0], weights=wts[scr == 0], minlength=nf)
    v_ja = np.bincount(vfeat[scr == 1], weights=wts[scr == 1], minlength=nf)

    # --- paper rule (language.paper_counts): quantise per feature, class of each max token
    ok = (a == np.floor(a)) & (a >= 0) & (a <= 10)
    f_ok = np.logical_and.reduceat(ok, fstart)
    ftop = np.maximum.reduceat(a, fstart)
    scale = np.where(ftop > 0, 10.0 / np.where(ftop > 0, ftop, 1.0), 0.0)
    q = np.where(f_ok[tfeat], a, np.floor(c * scale[tfeat] + 0.5))
    qmax = _first_max(q, starts, wid)
    qcls = codes(qmax, 1)
    for w in np.flatnonzero(qcls == 2).tolist():
        i = int(qmax[w] - starts[w])
        qcls[w] = _PAPER[paper_token_class(flat_w[w], i)]
    p_en = np.bincount(wfeat[qcls == 0], minlength=nf)
    p_ja = np.bincount(wfeat[qcls == 1], minlength=nf)

    # --- granularity: the max token of each window (raw activations, first on ties)
    gmax = _first_max(a, starts, wid)
    gmax_l, starts_l = gmax.tolist(), starts.tolist()
    b0 = np.r_[0, np.cumsum(n_win)].tolist()
    surf, letters, word_at, start = gr._surface, gr._letters, gr._word_at, gr.START
    pieces_all = [pairs[g][0] for g in gmax_l]
    prevs_all = [surf(pairs[g - 1][0]) if g > s0 else start for g, s0 in zip(gmax_l, starts_l)]
    words_all = [word_at(flat_w[w], gmax_l[w] - starts_l[w]) if letters(p) else p
                 for w, p in enumerate(pieces_all)]
    for j, k in enumerate(live):
        lo, hi = b0[j], b0[j + 1]
        pieces, words, prevs = pieces_all[lo:hi], words_all[lo:hi], prevs_all[lo:hi]
        votes = {"en": float(v_en[j]), "ja": float(v_ja[j])}
        st = gr.stats_from_max_tokens(pieces, words, prevs, votes, embed=backend.embed,
                                      lexicon=backend.lexicon, dictionary=backend.resolved())
        lab, conf = gr.decide(st, backend.params)
        out[k] = FeatureLabels(majority_language({"en": int(p_en[j]), "ja": int(p_ja[j])}),
                               majority_language(votes), lab, conf)
    return out  # type: ignore[return-value]


_VOCAB: tuple[int, _Vocab] | None = None


def _process_vocab() -> _Vocab:
    """One token table per process, kept across chunks (a real SAE's ~100k pieces repeat)."""
    global _VOCAB
    if _VOCAB is None or _VOCAB[0] != os.getpid() or len(_VOCAB[1]) > 1 << 20:
        _VOCAB = (os.getpid(), _Vocab())
    return _VOCAB[1]


# ------------------------------------------------------------------------ many processes
_JOB: tuple[Sequence, gr.RuleBackend] | None = None


def _work(span: tuple[int, int]) -> list[FeatureLabels]:
    assert _JOB is not None
    features, backend = _JOB
    return label_chunk(features[span[0] : span[1]], backend)


def _reopen() -> None:
    if _JOB is not None:
        d = _JOB[1].resolved()
        if hasattr(d, "reopen"):
            d.reopen()  # an SQLite connection must not cross a fork


def label_features(features: Sequence[Sequence[Sequence]], backend: gr.RuleBackend | None = None,
                   *, workers: int = 1, chunk: int = 512) -> list[FeatureLabels]:
    """Labels of every feature, in order; ``workers > 1`` forks that many processes (POSIX).

    The backend (and its JMdict index) is built once in this process and inherited by the
    workers. Anything but a :class:`~llmjp_ckpt.labels.granularity.RuleBackend` (the LLM judge)
    is asked feature by feature.
    """
    global _JOB
    if backend is not None and not isinstance(backend, gr.RuleBackend):
        return [FeatureLabels(paper_language(ex), script_language(ex), *backend.classify(ex))
                for ex in features]
    backend = backend or gr.default_backend()
    backend.resolved()  # load the dictionary before forking
    spans = [(i, min(i + chunk, len(features))) for i in range(0, len(features), chunk)]
    workers = min(workers, len(spans), os.cpu_count() or 1)
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [lab for s, e in spans for lab in label_chunk(features[s:e], backend)]
    _JOB = (features, backend)
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_reopen) as pool:
            return [lab for part in pool.imap(_work, spans) for lab in part]
    finally:
        _JOB = None
