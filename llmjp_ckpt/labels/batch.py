"""Batched labelling of many features at once: language (paper and script rules) and granularity.

The per-feature functions (``language.paper_language``, ``language.script_language``,
``granularity.classify``) walk every ``(token, activation)`` pair in Python; a 32,768-latent SAE
with 50 examples of 64 tokens each is 100M pairs. Here a chunk of features is flattened once into
numpy arrays (token ids into a table of distinct token texts, activations, window offsets); the
per-window work (max token, the paper rule's quantisation, the script rule's votes) is array
arithmetic, per-token properties are computed once per distinct text, and only the work on each
feature's ≤ 50 max tokens stays in Python (``granularity.stats_from_max_tokens``, shared with
the per-feature path). :func:`label_features` with ``workers=2`` spreads chunks over forked
processes. The arrays are a :class:`FlatFeatures`; the features stage builds them straight from
its top-N store (``features.store.LabelInputs``), so no Python list per token exists at all.
The labels equal the per-feature functions' exactly (``tests/labels/test_batch.py`` checks all
298 peer features and random windows); speed is in ``BENCHMARKS.md`` (L1, L1b).
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import chain
from operator import itemgetter

import numpy as np
from tqdm.auto import tqdm

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


class _Win(Sequence):
    """One window of a :class:`FlatFeatures` as the per-feature helpers index it:
    ``window[j][0]`` is token ``j``'s text (negative ``j`` from the end; activations unused)."""

    __slots__ = ("_n", "_s", "_texts", "_tok")

    def __init__(self, texts: Sequence, tok: np.ndarray, start: int, n: int):
        self._texts, self._tok, self._s, self._n = texts, tok, start, n

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, j):  # type: ignore[override]
        if j < 0:
            j += self._n
        if not 0 <= j < self._n:
            raise IndexError(j)
        return (self._texts[self._tok[self._s + j]], 0.0)


@dataclass(frozen=True)
class FlatFeatures:
    """Many features' windows as flat arrays: ``features[k]`` has ``n_win[k]`` (≥ 1) windows,
    window ``w`` has ``lens[w]`` (≥ 1) tokens, token ``i`` is ``texts[tok[i]]`` with activation
    ``acts[i]`` — windows and tokens in the order the per-feature functions would see them."""

    texts: Sequence  # distinct token texts (or one per token)
    tok: np.ndarray  # [P] int64: index into ``texts`` per token
    acts: np.ndarray  # [P] float64
    lens: np.ndarray  # [W] int64
    n_win: np.ndarray  # [F] int64

    def __len__(self) -> int:
        return len(self.n_win)

    @classmethod
    def from_lists(cls, features: Sequence[Sequence[Sequence]]) -> FlatFeatures:
        """From lists of non-empty windows of ``[token_text, activation]`` (≥ 1 a feature)."""
        flat_w = [w for ex in features for w in ex]
        n_win = np.fromiter(map(len, features), np.int64, len(features))
        lens = np.fromiter(map(len, flat_w), np.int64, len(flat_w))
        pairs = list(chain.from_iterable(flat_w))  # (zip(*pairs) would build an iterator a pair)
        a = np.fromiter(map(itemgetter(1), pairs), np.float64, len(pairs))
        texts = list(map(itemgetter(0), pairs))  # one text per token: no interning needed
        return cls(texts, np.arange(len(pairs)), a, lens, n_win)

    def examples(self, k: int) -> list[list[list]]:
        """Feature ``k`` as lists of windows of ``[text, activation]`` (for a non-rule judge)."""
        wb = np.r_[0, np.cumsum(self.n_win)]
        pb = np.r_[0, np.cumsum(self.lens)]
        return [[[self.texts[t], a] for t, a in zip(self.tok[pb[w]:pb[w + 1]].tolist(),
                                                    self.acts[pb[w]:pb[w + 1]].tolist())]
                for w in range(int(wb[k]), int(wb[k + 1]))]

    def slice(self, lo: int, hi: int) -> FlatFeatures:
        """Features ``lo:hi`` (the token table is shared)."""
        wb = np.r_[0, np.cumsum(self.n_win)]
        pb = np.r_[0, np.cumsum(self.lens)]
        w0, w1 = int(wb[lo]), int(wb[hi])
        p0, p1 = int(pb[w0]), int(pb[w1])
        return FlatFeatures(self.texts, self.tok[p0:p1], self.acts[p0:p1], self.lens[w0:w1],
                            self.n_win[lo:hi])


def label_chunk(features: Sequence[Sequence[Sequence]], backend: gr.RuleBackend | None = None,
                vocab: _Vocab | None = None) -> list[FeatureLabels]:
    """Labels of ``features`` (each a list of windows of ``[token_text, activation]`` pairs)."""
    backend = backend or gr.default_backend()
    wins = [[w for w in ex if len(w) > 0] for ex in features]
    out: list[FeatureLabels | None] = [None] * len(features)
    live = [k for k, ws in enumerate(wins) if ws]
    for k in range(len(features)):
        if not wins[k]:  # no example: what the per-feature functions say about nothing
            lab, conf = backend.classify([])
            out[k] = FeatureLabels(paper_language([]), script_language([]), lab, conf)
    if not live:
        return out  # type: ignore[return-value]
    for k, lab in zip(live, label_flat(FlatFeatures.from_lists([wins[k] for k in live]), backend, vocab)):
        out[k] = lab
    return out  # type: ignore[return-value]


def label_flat(flat: FlatFeatures, backend: gr.RuleBackend | None = None,
               vocab: _Vocab | None = None) -> list[FeatureLabels]:
    """Labels of every feature of ``flat`` (each with at least one non-empty window)."""
    backend = backend or gr.default_backend()
    vocab = vocab if vocab is not None else _process_vocab()
    texts, tok, a, lens, n_win = flat.texts, flat.tok, flat.acts, flat.lens, flat.n_win
    W, nf = len(lens), len(n_win)
    if nf == 0:
        return []
    starts = np.zeros(W, np.int64)
    np.cumsum(lens[:-1], out=starts[1:])
    wfeat = np.repeat(np.arange(nf), n_win)
    # windows of one length (the features stage's store): per-window work on a [W, T] view, no
    # per-token window/feature index arrays; otherwise reduceat over ragged windows
    T = int(lens[0]) if W and bool((lens == lens[0]).all()) else 0
    wid = None if T else np.repeat(np.arange(W), lens)

    def wid_of(idx: np.ndarray) -> np.ndarray:
        return idx // T if T else wid[idx]  # type: ignore[index]

    def per_token(x: np.ndarray, v: np.ndarray, op) -> np.ndarray:
        """``op(v, x[window of each token])`` over every token."""
        return op(v.reshape(W, T), x[:, None]).reshape(-1) if T else op(v, x[wid])

    def first_max(v: np.ndarray) -> np.ndarray:
        return np.argmax(v.reshape(W, T), axis=1) + starts if T else _first_max(v, starts, wid)

    def window_max(v: np.ndarray) -> np.ndarray:
        return v.reshape(W, T).max(axis=1) if T else np.maximum.reduceat(v, starts)

    fstart = np.zeros(nf, np.int64)
    np.cumsum(np.add.reduceat(lens, np.r_[0, np.cumsum(n_win)[:-1]])[:-1], out=fstart[1:])

    def codes(positions: np.ndarray, k: int) -> np.ndarray:
        """Script (k=0) or paper-rule (k=1) codes of the tokens at ``positions`` only: text
        look-ups are the costly part, and only active and max tokens need them."""
        u, inv = np.unique(tok[positions], return_inverse=True)
        table = np.fromiter((vocab[texts[i]][k] for i in u.tolist()), np.int8, len(u))
        return table[inv.reshape(-1)]

    # --- script rule (language.script_scores): activation-weighted votes of active tokens
    c = np.maximum(a, 0.0)
    ctop = window_max(c)
    valid = ctop > 0
    act = np.flatnonzero(per_token(np.where(valid, 0.5 * ctop, np.inf), c, np.greater_equal))
    act_script = codes(act, 0)
    vpos = act[act_script != 2]
    voted = np.zeros(W, bool)
    voted[wid_of(vpos)] = True
    pos, wts, scr = vpos.astype(np.float64), c[vpos], act_script[act_script != 2]
    lonely = np.flatnonzero(valid & ~voted)  # all active tokens neutral: nearest scripted one
    if len(lonely):
        cfirst = first_max(c)
        fpos, fw, fs = [], [], []
        for w in lonely.tolist():
            s0, i, n = int(starts[w]), int(cfirst[w] - starts[w]), int(lens[w])
            for j in [*range(i - 1, -1, -1), *range(i + 1, n)]:
                sj = vocab[texts[tok[s0 + j]]][0]
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
    vfeat = wfeat[wid_of(pos[order].astype(np.int64))]
    wts, scr = wts[order], scr[order]
    v_en = np.bincount(vfeat[scr == 0], weights=wts[scr == 0], minlength=nf)
    v_ja = np.bincount(vfeat[scr == 1], weights=wts[scr == 1], minlength=nf)

    # --- paper rule (language.paper_counts): quantise per feature, class of each max token
    ok = (a == np.floor(a)) & (a >= 0) & (a <= 10)
    f_ok = np.logical_and.reduceat(ok, fstart)
    ftop = np.maximum.reduceat(a, fstart)
    scale = np.where(ftop > 0, 10.0 / np.where(ftop > 0, ftop, 1.0), 0.0)
    w_ok, w_scale = f_ok[wfeat], scale[wfeat]
    if T:
        q = np.where(w_ok[:, None], a.reshape(W, T), np.floor(c.reshape(W, T) * w_scale[:, None] + 0.5)).reshape(-1)
    else:
        q = np.where(w_ok[wid], a, np.floor(c * w_scale[wid] + 0.5))
    qmax = first_max(q)
    qcls = codes(qmax, 1)
    for w in np.flatnonzero(qcls == 2).tolist():
        i = int(qmax[w] - starts[w])
        qcls[w] = _PAPER[paper_token_class(_Win(texts, tok, int(starts[w]), int(lens[w])), i)]
    p_en = np.bincount(wfeat[qcls == 0], minlength=nf)
    p_ja = np.bincount(wfeat[qcls == 1], minlength=nf)

    # --- granularity: the max token of each window (raw activations, first on ties)
    gmax = first_max(a)
    gmax_l, starts_l, lens_l = gmax.tolist(), starts.tolist(), lens.tolist()
    b0 = np.r_[0, np.cumsum(n_win)].tolist()
    surf, letters, start = gr._surface, gr._letters, gr.START
    gtok = tok[gmax].tolist()
    pieces_all = [texts[t] for t in gtok]
    before = tok[np.maximum(gmax - 1, 0)].tolist()
    after = tok[np.minimum(gmax + 1, len(tok) - 1)].tolist()
    surf_of: dict[int, str] = {}  # per text: a token repeats across windows and features
    prevs_all = [(surf_of[t] if t in surf_of else surf_of.setdefault(t, surf(texts[t]))) if g > s0 else start
                 for t, g, s0 in zip(before, gmax_l, starts_l)]
    surfs_all = [surf_of[t] if t in surf_of else surf_of.setdefault(t, surf(texts[t])) for t in gtok]
    letters_of: dict[int, bool] = {}

    def is_letters(t: int) -> bool:
        if t not in letters_of:
            letters_of[t] = letters(str(texts[t]))
        return letters_of[t]

    def flat_word_at(g: int, s0: int, end: int) -> str:
        """``gr._word_at`` of the window ``s0:end`` at ``g``, step for step, on the flat arrays."""
        ids = tok[s0:end].tolist()
        i = g - s0
        lo = i
        while lo > 0 and not str(texts[ids[lo]]).startswith(" ") and is_letters(ids[lo - 1]):
            lo -= 1
        hi = i
        while hi + 1 < len(ids):
            t = ids[hi + 1]
            if not is_letters(t) or str(texts[t]).startswith(" "):
                break
            hi += 1
        if lo == hi:
            return str(texts[ids[i]])
        return "".join(str(texts[ids[j]]) for j in range(lo, hi + 1))

    words_all = []
    for w, p in enumerate(pieces_all):
        if not letters(p):
            words_all.append(p)
            continue
        g, s0 = gmax_l[w], starts_l[w]
        # _word_at's first step either way; when neither joins, the word is the piece itself
        left = g > s0 and not str(p).startswith(" ") and is_letters(before[w])
        right = g + 1 < s0 + lens_l[w] and is_letters(after[w]) and not str(texts[after[w]]).startswith(" ")
        words_all.append(flat_word_at(g, s0, s0 + lens_l[w]) if left or right else p)
    vectors = backend.resolved_vectors()
    out = []
    for j in range(nf):
        lo, hi = b0[j], b0[j + 1]
        pieces, words, prevs = pieces_all[lo:hi], words_all[lo:hi], prevs_all[lo:hi]
        votes = {"en": float(v_en[j]), "ja": float(v_ja[j])}
        st = gr.stats_from_max_tokens(pieces, words, prevs, votes, embed=backend.embed,
                                      embed_threshold=backend.embed_threshold, lexicon=backend.lexicon,
                                      dictionary=backend.resolved(),
                                      surfaces=surfs_all[lo:hi], vectors=vectors)
        lab, conf = gr.decide(st, backend.params)
        out.append(FeatureLabels(majority_language({"en": int(p_en[j]), "ja": int(p_ja[j])}),
                                 majority_language(votes), lab, conf))
    return out


_VOCAB: tuple[int, _Vocab] | None = None


def _process_vocab() -> _Vocab:
    """One token table per process, kept across chunks (a real SAE's ~100k pieces repeat); a
    forked worker starts from its parent's (a copy-on-write dict of pure values: safe to reuse)."""
    global _VOCAB
    if _VOCAB is None or len(_VOCAB[1]) > 1 << 20:
        _VOCAB = (os.getpid(), _Vocab())
    return _VOCAB[1]


# ------------------------------------------------------------------------ many processes
_JOB: tuple[Sequence | FlatFeatures, gr.RuleBackend] | None = None


def _work(span: tuple[int, int]) -> list[FeatureLabels]:
    assert _JOB is not None
    features, backend = _JOB
    return _label_span(features, span, backend)


def _label_span(features: Sequence | FlatFeatures, span: tuple[int, int],
                backend: gr.RuleBackend) -> list[FeatureLabels]:
    if hasattr(features, "slice"):  # a FlatFeatures, or a source of them (features.store)
        return label_flat(features.slice(*span), backend)  # type: ignore[union-attr]
    return label_chunk(features[span[0] : span[1]], backend)


def _reopen() -> None:
    if _JOB is not None:
        d = _JOB[1].resolved()
        if hasattr(d, "reopen"):
            d.reopen()  # an SQLite connection must not cross a fork


def label_features(features: Sequence[Sequence[Sequence]] | FlatFeatures,
                   backend: gr.RuleBackend | None = None,
                   *, workers: int = 1, chunk: int = 512, desc: str | None = None) -> list[FeatureLabels]:
    """Labels of every feature, in order; ``workers > 1`` forks that many processes (POSIX);
    ``desc``: a progress bar over the chunks.

    ``features``: lists of windows of ``[token_text, activation]`` pairs, or a
    :class:`FlatFeatures` (the features stage's arrays, no Python pair per token), or any
    sized object whose ``slice(lo, hi)`` gives one (built per chunk, in the worker).

    The backend (and its JMdict index) is built once in this process and inherited by the
    workers. Anything but a :class:`~llmjp_ckpt.labels.granularity.RuleBackend` (the LLM judge)
    is asked feature by feature.
    """
    global _JOB
    if backend is not None and not isinstance(backend, gr.RuleBackend):
        if isinstance(features, FlatFeatures):
            features = [features.examples(k) for k in range(len(features))]
        return [FeatureLabels(paper_language(ex), script_language(ex), *backend.classify(ex))
                for ex in features]
    backend = backend or gr.default_backend()
    backend.resolved()  # load the dictionary (and word vectors, when used) before forking
    backend.resolved_vectors()
    spans = [(i, min(i + chunk, len(features))) for i in range(0, len(features), chunk)]
    workers = min(workers, len(spans), os.cpu_count() or 1)

    def bar(parts: Iterable[list[FeatureLabels]]) -> Iterable[list[FeatureLabels]]:
        return tqdm(parts, desc=desc, total=len(spans), unit="chunk", leave=False) if desc else parts

    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return [lab for part in bar(_label_span(features, span, backend) for span in spans) for lab in part]
    _JOB = (features, backend)
    try:
        ctx = multiprocessing.get_context("fork")
        with ctx.Pool(workers, initializer=_reopen) as pool:
            return [lab for part in bar(pool.imap(_work, spans)) for lab in part]
    finally:
        _JOB = None
