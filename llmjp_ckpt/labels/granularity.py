"""Granularity of a feature — token / synonym / semantic / uninterpretable — with a confidence.

The default backend (:class:`RuleBackend`) reads only the feature's examples. Per example it
takes the max-activating token (first on ties) and the whole word around it, then measures:

* how concentrated the max tokens are (share of the top one or two surface forms after NFKC,
  casefold and stripping ``▁``/space; entropy) — one or two forms → ``token``;
* whether distinct words are *variants of one word*: spelling (British/American), inflection,
  katakana loanword ↔ English word by sound (form relations), or *words of one meaning*:
  translations and words glossing one sense in JMdict (:mod:`.dictionary`, when the package
  ``jamdict-data`` is installed), or — when a hook is given — close in the model's own
  embedding space or paired in a lexicon file → ``synonym``;
* whether diverse max tokens still share one shape (all katakana, all digits, all capitalised
  Latin words, ...) and one script, and forms recur (not a new form in nearly every example)
  → ``semantic``; otherwise ``uninterpretable``;
* whether diverse max tokens fill one slot of a fixed frame — nearly all follow the same token
  ("on air / screen / stage") → ``semantic`` even when one form dominates (checked before the
  token rules);
* optionally (off by default), how close in meaning the strongest forms are: mean cosine of
  their word vectors (:mod:`.meaning`, the ``ja-ginza`` table) → ``semantic`` when close.

The few thresholds live in ``granularity_params.json`` beside this module (fitted on part of
the authors' labelled features; ``docs/labels-eval.md`` gives the split and the figures).
:class:`LLMJudgeBackend` asks an OpenAI-compatible chat endpoint instead (client imported
lazily; never needed by tests).
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import operator
import os
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Protocol

from llmjp_ckpt import chars
from llmjp_ckpt.labels import lexical
from llmjp_ckpt.labels.dictionary import default_dictionary
from llmjp_ckpt.labels.language import script_scores
from llmjp_ckpt.labels.meaning import VEC_MIN_FORMS, WordVectors, default_vectors, vector_stats

LABELS = ("token", "synonym", "semantic", "uninterpretable")
DICT_WORDS = 3  # a max-token form is looked up in the dictionary as itself and its top words
PARAMS_FILE = Path(__file__).with_name("granularity_params.json")

# An optional hook: token text -> vector (e.g. rows of the model's embedding matrix).
Embedder = Callable[[str], Sequence[float] | None]


class Dictionary(Protocol):
    """A bilingual dictionary: do two surface forms translate or gloss one another?"""

    def related(self, a: str, b: str) -> bool: ...


# ------------------------------------------------------------------------------ features
@dataclass(frozen=True)
class TokenStats:
    """Interpretable statistics of a feature's max-activating tokens."""

    n: int  # examples
    p1: float  # share of the most common surface form
    p2: float  # share of the two most common surface forms
    entropy: float  # bits, over surface forms
    distinct: int  # distinct surface forms
    cluster: float  # share of the largest cluster of related words (variants/translations)
    variant: float  # share of that cluster outside its most common form: evidence of synonymy
    shape: float  # share of the most common shape class (katakana, digits, Capitalised, ...)
    script_mix: float  # minority script's share of the script-rule vote (0 = one language)
    top_forms: tuple[tuple[str, int], ...] = ()
    form_variant: float = 0.0  # ``variant`` by form relations alone (spelling, inflection, loan)
    ctx_prev: float = 0.0  # distinct tokens just before the max token, per example
    vec_sim: float = 0.0  # mean pairwise cosine of the strongest distinct forms' word vectors
    vec_forms: int = 0  # how many of those forms have a vector (0: no vector table given)


def _max_index(window: Sequence) -> int:
    return max(range(len(window)), key=lambda j: float(window[j][1]))


_LETTERS = re.compile(r" ?[A-Za-z]+")


@functools.lru_cache(maxsize=1 << 17)
def _letters(piece: str) -> bool:
    """A Latin-letter piece, optionally after one space (``▁`` shown as a space)."""
    return _LETTERS.fullmatch(piece) is not None


def _word_at(window: Sequence, i: int) -> str:
    """The whole Latin word the piece ``i`` belongs to (SentencePiece: a space starts a word)."""
    here = str(window[i][0])
    if not _letters(here):
        return here
    lo = i
    while lo > 0 and not str(window[lo][0]).startswith(" ") and _letters(str(window[lo - 1][0])):
        lo -= 1
    hi = i
    while hi + 1 < len(window):
        nxt = str(window[hi + 1][0])
        if not _letters(nxt) or nxt.startswith(" "):
            break
        hi += 1
    if lo == hi:
        return here
    return "".join(str(window[j][0]) for j in range(lo, hi + 1))


def shape_class(token: str) -> str:
    """A coarse class of a token's form, for 'diverse but of one kind' (semantic) features."""
    if lexical.is_byte_piece(token) or not token.strip():
        return "space"
    t = unicodedata.normalize("NFKC", token)
    s = t.strip()
    if s.isdigit():
        return "digit"
    if all(unicodedata.category(c)[0] in "PSZC" for c in s):
        return "punct"
    if all(chars.is_hiragana(c) for c in s):
        return "hiragana"
    if all(chars.is_katakana(c) for c in s):
        return "katakana"
    if all(chars.is_kanji(c) or c == "々" for c in s):
        return "kanji"
    if re.fullmatch(r"[A-Za-z]+", s):
        lead = "word" if t[:1].isspace() else "piece"
        case = "upper" if s.isupper() and len(s) > 1 else "cap" if s[0].isupper() else "lower"
        return f"latin-{lead}-{case}"
    if any(chars.in_cjk_span(c) for c in s):
        return "ja-mixed"
    return "other"


def token_stats(
    examples: Sequence[Sequence],
    *,
    embed: Embedder | None = None,
    embed_threshold: float = 0.6,
    lexicon: Mapping[str, set[str]] | None = None,
    dictionary: Dictionary | None = None,
    vectors: WordVectors | None = None,
) -> TokenStats:
    """Statistics of ``examples`` (a list of windows of ``[token_text, activation]`` pairs)."""
    windows = [w for w in examples if len(w) > 0]
    pieces, words, prevs = max_tokens(windows)
    votes = script_scores(windows) if windows else {"en": 0.0, "ja": 0.0}
    return stats_from_max_tokens(pieces, words, prevs, votes, embed=embed,
                                 embed_threshold=embed_threshold, lexicon=lexicon,
                                 dictionary=dictionary, vectors=vectors)


START = "\x00start"  # the "previous token" of a max token that opens its window


def max_tokens(windows: Sequence[Sequence]) -> tuple[list[str], list[str], list[str]]:
    """Per non-empty window: its max token (first on ties), the whole word around it, and the
    surface form of the token before it (:data:`START` at the window's start)."""
    pieces, words, prevs = [], [], []
    for w in windows:
        if not w:
            continue
        acts = [float(p[1]) for p in w]
        i = acts.index(max(acts))
        pieces.append(str(w[i][0]))
        words.append(_word_at(w, i))
        prevs.append(lexical.surface(str(w[i - 1][0])) if i > 0 else START)
    return pieces, words, prevs


def stats_from_max_tokens(
    pieces: Sequence[str],
    words: Sequence[str],
    prevs: Sequence[str],
    votes: Mapping[str, float],
    *,
    embed: Embedder | None = None,
    embed_threshold: float = 0.6,
    lexicon: Mapping[str, set[str]] | None = None,
    dictionary: Dictionary | None = None,
    surfaces: Sequence[str] | None = None,
    vectors: WordVectors | None = None,
) -> TokenStats:
    """:class:`TokenStats` from the max tokens of each example (:func:`max_tokens`) and the
    script rule's votes (``language.script_scores``); shared by :func:`token_stats` and the
    batched labeller (:mod:`llmjp_ckpt.labels.batch`), which passes ``surfaces`` (``_surface``
    of each piece, computed once per distinct token)."""
    n = len(pieces)
    if n == 0:
        return TokenStats(0, 0.0, 0.0, 0.0, 0, 0.0, 0.0, 0.0, 0.0)
    surf = list(surfaces) if surfaces is not None else [_surface(p) for p in pieces]
    forms = Counter(surf)
    top = forms.most_common()
    p1 = top[0][1] / n
    p2 = sum(c for _, c in top[:2]) / n
    entropy = -sum([c / n * math.log2(c / n) for _, c in top])  # a list: faster, same sum
    shapes = Counter(map(_shape, pieces))
    shape = shapes.most_common(1)[0][1] / n
    ctx_prev = len(set(prevs)) / n

    # Related forms: union-find over distinct max-token forms, each also known by the word it
    # most often sits in (``apped`` → ``capped``), so inflections split across pieces join.
    rep: dict[str, dict[str, int]] = {}  # form -> word -> count, in first-seen order (a Counter's)
    for f, w, piece in zip(surf, words, pieces):
        r = rep.setdefault(f, {})
        sw = f if w == piece else _surface(w)  # most words are their piece: f is its surface
        r[sw] = r.get(sw, 0) + 1
    names = [f for f, _ in top if f]
    if len(names) == 1 and not (embed or lexicon):  # one form: nothing can relate
        c = forms[names[0]]
        tot = votes["en"] + votes["ja"]
        mix = min(votes["en"], votes["ja"]) / tot if tot else 0.0
        return TokenStats(n, p1, p2, entropy, len(top), c / n, 0.0, shape, mix, tuple(top[:5]),
                          0.0, ctx_prev)
    parent = {f: f for f in names}

    def find(f: str) -> str:
        while parent[f] != f:
            parent[f] = parent[parent[f]]
            f = parent[f]
        return f

    alias = {f: (f, _most_common(rep[f], 1)[0]) for f in names}
    vec_sim, vec_forms = (vector_stats([(w, f) for f, w in alias.values()], vectors)
                          if vectors is not None else (0.0, 0))  # the whole word, then the piece
    for a, b in _related_pairs(alias, embed, embed_threshold, lexicon):
        parent[find(a)] = find(b)
    clusters: dict[str, list[int]] = {}
    for f in names:
        clusters.setdefault(find(f), []).append(forms[f])
    # Dictionary relations (meaning, not form) do not chain: a cluster joins only the clusters
    # it is directly related to (in ~ on, on ~ from must not make in ~ from).
    near: dict[str, set[str]] = {c: {c} for c in clusters}
    if dictionary is not None:
        dwords = {f: (f, *_most_common(rep[f], DICT_WORDS)) for f in names}
        for a, b in _dictionary_pairs(dwords, dictionary):
            ca, cb = find(a), find(b)
            near[ca].add(cb)
            near[cb].add(ca)
    best = max(([k for c in near[r] for k in clusters[c]] for r in clusters), key=sum,
               default=[0])
    cluster = sum(best) / n
    variant = (sum(best) - max(best)) / n
    own = max(clusters.values(), key=sum, default=[0])
    form_variant = (sum(own) - max(own)) / n

    tot = votes["en"] + votes["ja"]
    script_mix = min(votes["en"], votes["ja"]) / tot if tot else 0.0
    return TokenStats(n, p1, p2, entropy, len(top), cluster, variant, shape, script_mix,
                      tuple(top[:5]), form_variant, ctx_prev, vec_sim, vec_forms)


def _most_common(counts: dict[str, int], n: int) -> list[str]:
    """The keys of ``Counter(counts).most_common(n)``, same order on ties, without building one."""
    if len(counts) == 1:
        return list(counts)
    if n == 1:
        return [max(counts.items(), key=_COUNT)[0]]  # the first of the largest, as most_common(1)
    return [w for w, _ in sorted(counts.items(), key=_COUNT, reverse=True)[:n]]  # stable


_COUNT = operator.itemgetter(1)


@functools.lru_cache(maxsize=1 << 17)  # pieces repeat: the vocabulary is ~100k
def _surface(piece: str) -> str:
    return lexical.surface(piece)


@functools.lru_cache(maxsize=1 << 17)
def _latin_key(name: str) -> str | None:
    """``lexical.variant_key`` of a Latin-word name, ``None`` for any other."""
    return lexical.variant_key(name) if lexical.is_latin_word(name) else None


@functools.lru_cache(maxsize=1 << 17)
def _shape(piece: str) -> str:
    return shape_class(piece)


def _related_pairs(
    alias: dict[str, tuple[str, str]],
    embed: Embedder | None,
    thr: float,
    lexicon: Mapping[str, set[str]] | None,
) -> list[tuple[str, str]]:
    """Pairs of forms that are variants or translations of one word (module docstring).

    A form is known by itself and by the word it most often sits in; two forms relate when
    any of these names share a variant key (or one key extends the other, both ≥ 5 letters),
    sound alike as katakana loan and English word, pair in ``lexicon``, or — with ``embed`` —
    have cosine similarity ≥ ``thr``.
    """
    pairs: list[tuple[str, str]] = []
    by_key: dict[str, str] = {}
    latin: list[tuple[str, str, str]] = []  # (key, name, form)
    kata: list[tuple[str, str]] = []  # (name, form)
    for f, names in alias.items():
        for x in set(names):
            k = _latin_key(x)
            if k is not None:
                if k in by_key and by_key[k] != f:
                    pairs.append((by_key[k], f))
                by_key.setdefault(k, f)
                latin.append((k, x, f))
            elif lexical.is_katakana(x):
                kata.append((x, f))
            if lexicon:
                for y in lexicon.get(x, ()):
                    for g, gn in alias.items():
                        if g != f and y in gn:
                            pairs.append((f, g))
    latin.sort()
    for (k1, _, f1), (k2, _, f2) in itertools.pairwise(latin):
        if f1 != f2 and len(k1) >= 5 and k2.startswith(k1):
            pairs.append((f1, f2))
    if kata and latin:  # lexical.loan_match on every katakana × Latin name, forms read once each
        ks = [(sk, f) for x, f in kata for kind, sk in (lexical.loan_form(x),) if kind == "k"]
        ls = [(sk, g) for _, y, g in latin for kind, sk in (lexical.loan_form(y),) if kind == "l"]
        match = lexical.skeletons_match
        for ska, f in ks:
            for skl, g in ls:
                if f != g and match(ska, skl):
                    pairs.append((f, g))
    if embed is not None:  # every pair's cosine in one matrix product (rows of d ~ 2,048)
        import numpy as np

        got = [(f, v) for f in alias if (v := embed(f)) is not None]
        if len(got) >= 2:
            m = np.array([v for _, v in got], dtype=np.float64)  # a copy: normalised in place
            norm = np.linalg.norm(m, axis=1)
            ok = norm > 0
            m[ok] /= norm[ok, None]
            sim = m @ m.T
            for i, j in zip(*np.nonzero(np.triu(sim >= thr - 1e-12, 1) & ok[:, None] & ok[None, :])):
                pairs.append((got[i][0], got[j][0]))
    return pairs


# name -> (its sense ids when an English word with senses, its entry ids when any, English?), for
# the dictionary last asked (a name recurs across features; its keys are a pure function of it)
_NAME_KEYS: tuple[object, dict[str, tuple[frozenset[int] | None, frozenset[int] | None, bool]]] | None = None


def _dictionary_pairs(alias: dict[str, tuple[str, ...]], dictionary: Dictionary,
                      ) -> list[tuple[str, str]]:
    """Pairs of forms whose names translate or gloss one another in ``dictionary``.

    A dictionary with ``keys(form) -> (sense ids, entry ids)`` (JMdict) is read through an
    inverted index — two English words relate by a shared sense, any other two forms by a shared
    entry, exactly ``JMdictLexicon.related`` — instead of asking ``related`` for every pair.
    """
    named = [(f, x) for f, names in alias.items() for x in set(names)]
    keys = getattr(dictionary, "keys", None)
    if keys is None:
        return [(f, g) for i, (f, x) in enumerate(named) for g, y in named[i + 1 :]
                if f != g and dictionary.related(x, y)]
    eng: list[tuple[str, frozenset[int]]] = []
    ent: list[tuple[str, bool, frozenset[int]]] = []
    global _NAME_KEYS
    if _NAME_KEYS is None or _NAME_KEYS[0] is not dictionary:
        _NAME_KEYS = (dictionary, {})
    cache = _NAME_KEYS[1]
    for f, x in named:
        hit = cache.get(x)
        if hit is None:
            senses, entries = keys(x)
            english = lexical.is_latin_word(_surface(x))
            hit = (senses if english and senses else None, entries or None, english)
            if len(cache) < 1 << 18:
                cache[x] = hit
        if hit[0] is not None:
            eng.append((f, hit[0]))
        if hit[1] is not None:
            ent.append((f, hit[2], hit[1]))
    pairs: set[tuple[str, str]] = set()
    # keys held by two or more names, found with set algebra (C speed), then only those grouped
    for items, is_sense in ((eng, True), (ent, False)):
        seen: set[int] = set()
        dup: set[int] = set()
        for it in items:
            ks = it[-1]
            dup |= seen & ks
            seen |= ks
        if not dup:
            continue
        groups: dict[int, list] = {}
        for it in items:
            for k in it[-1] & dup:
                groups.setdefault(k, []).append(it)
        for members in groups.values():
            for a, b in itertools.combinations(members, 2):
                f, g = a[0], b[0]
                if f != g and (is_sense or not (a[1] and b[1])):
                    pairs.add((f, g) if f < g else (g, f))
    return sorted(pairs)


def embedder_from_vocab(vocab: Mapping[str, int], weights: Sequence[Sequence[float]]) -> Embedder:
    """An ``embed`` hook from a tokenizer's vocabulary (piece -> id) and an embedding matrix.

    ``weights[i]`` is the row of token id ``i`` (a list, NumPy array or CPU tensor) — e.g.
    ``model.W_E`` of the *final* checkpoint (early checkpoints' embeddings are close to their
    random start). A form is looked up as ``▁form`` (SentencePiece), ``Ġform`` (byte-level
    BPE), ``form`` and their capitalised spellings; forms that are no single piece give
    ``None`` and simply add no relation.
    """
    import numpy as np

    w = (weights.detach().float().cpu().numpy() if hasattr(weights, "detach")  # bf16 W_E too
         else np.asarray(weights, dtype=np.float32))
    n = len(w)

    @functools.lru_cache(maxsize=1 << 16)  # forms recur across features
    def embed(form: str) -> Sequence[float] | None:
        for f in (form, form.capitalize()):
            for piece in ("\u2581" + f, "\u0120" + f, f):
                i = vocab.get(piece)
                if i is not None and 0 <= i < n:
                    return w[i]  # a row view: the relation stacks rows, no Python floats
        return None

    return embed


def embedder_from_model(model: object) -> Embedder:
    """:func:`embedder_from_vocab` on a loaded model's ``W_E`` and its tokenizer's vocabulary;
    ``ValueError`` when the model carries no tokenizer to name the rows."""
    tok = getattr(model, "tokenizer", None)
    if tok is None or not hasattr(tok, "get_vocab"):
        raise ValueError("the model has no tokenizer (its vocabulary names the rows of W_E)")
    return embedder_from_vocab(tok.get_vocab(), model.W_E)


# ------------------------------------------------------------------------------- backends
class Backend(Protocol):
    """Anything that labels a feature's examples."""

    def classify(self, examples: Sequence[Sequence]) -> tuple[str, float]: ...


@dataclass
class RuleParams:
    """Thresholds of :class:`RuleBackend` (fitted values in ``granularity_params.json``)."""

    syn_variant: float = 0.2  # synonym: variant share by form relations ≥ this ...
    syn_meaning: float = 0.1  # ... or by form and dictionary relations ≥ this (not fitted) ...
    syn_cluster: float = 0.6  # ... within a related-word cluster covering ≥ this
    token_p1: float = 0.8  # token: the top surface form covers ≥ this ...
    token_p2: float = 0.9  # ... or the top two cover ≥ this ...
    token_pair_p1: float = 0.4  # ... with the top one ≥ this (two unrelated words, one feature)
    sem_shape: float = 0.6  # semantic: one shape class covers ≥ this ...
    sem_mix: float = 0.2  # ... and the minority script has < this of the vote ...
    sem_ctx_max: float = 1.0  # ... and distinct tokens before the max ≤ this per example
    # semantic, a slot in a fixed frame ("on air / screen / stage"): ≥ 3 strongest forms, the top
    # one < frame_p1, nearly all after one token (distinct previous tokens ≤ this per example);
    # fixed a priori, not fitted (docs/labels-eval.md): 0.05 is ≤ 2 previous tokens in 50
    sem_frame_ctx: float = 0.05
    sem_frame_p1: float = 0.8
    # semantic (both rules): distinct strongest forms ≤ this per example — a kind of word
    # recurs; when nearly every example has a form of its own, nothing does (fitted; prior 0.85)
    sem_distinct_max: float = 0.85
    # word vectors (``meaning``, optional; off by default, searched only by the ablation's LOCO
    # rows, evaluate.VEC_GRID): with ≥ 3 strongest forms that have a vector, mean cosine ≥
    # sem_vec_min → semantic after the token rules (≥ 1 turns it off), and the semantic rules
    # need mean cosine ≥ sem_vec_veto (0: off)
    sem_vec_min: float = 1.0
    sem_vec_veto: float = 0.0
    min_examples: int = 3  # fewer examples: only 'token' if all agree, else uninterpretable

    def uses_vectors(self) -> bool:
        """Whether any rule reads word vectors (else they need not be loaded)."""
        return self.sem_vec_min < 1.0 or self.sem_vec_veto > 0.0

    @classmethod
    def load(cls, path: str | Path = PARAMS_FILE) -> RuleParams:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        params = data.get("params", data)
        known = {f.name for f in fields(cls)}
        unknown = set(params) - known
        if unknown:
            raise ValueError(f"{path}: unknown parameter(s) {sorted(unknown)}")
        return cls(**params)


@dataclass
class RuleBackend:
    """Interpretable rules on :func:`token_stats` (no model needed; hooks for one)."""

    params: RuleParams = field(default_factory=RuleParams.load)
    embed: Embedder | None = None
    embed_threshold: float = 0.6  # cosine at/above which ``embed`` relates two forms (synonym)
    lexicon: Mapping[str, set[str]] | None = None
    dictionary: Dictionary | None = None  # None: JMdict when ``jamdict-data`` is installed
    use_dictionary: bool = True  # False: spelling, inflection and loanword rules only
    # word vectors; None: ja-ginza's when installed and a rule of ``params`` reads them
    vectors: WordVectors | None = None
    use_vectors: bool = True  # False: never load word vectors

    def resolved(self) -> Dictionary | None:
        """The dictionary in use: the given one, else JMdict when installed and wanted."""
        if self.dictionary is None and self.use_dictionary:
            return default_dictionary()
        return self.dictionary

    def resolved_vectors(self) -> WordVectors | None:
        """The word vectors in use: the given ones, else ja-ginza's when installed and needed."""
        if self.vectors is None and self.use_vectors and self.params.uses_vectors():
            return default_vectors()
        return self.vectors

    def classify(self, examples: Sequence[Sequence]) -> tuple[str, float]:
        st = token_stats(examples, embed=self.embed, embed_threshold=self.embed_threshold,
                         lexicon=self.lexicon,
                         dictionary=self.resolved(), vectors=self.resolved_vectors())
        return decide(st, self.params)


def decide(st: TokenStats, p: RuleParams) -> tuple[str, float]:
    """The rule cascade; the confidence is the margin past the deciding threshold, in 0.5–1
    (0.5 on the threshold, 1.0 at the far end of the statistic's range)."""
    def conf(x: float, thr: float) -> float:
        return round(0.5 + 0.5 * min(1.0, max(0.0, x - thr) / max(1 - thr, 1e-9)), 3)

    if st.n == 0:
        return "uninterpretable", 1.0
    if st.n < p.min_examples:
        return ("token", 0.5) if st.p1 == 1.0 else ("uninterpretable", 0.5)
    if st.cluster >= p.syn_cluster and st.form_variant >= p.syn_variant:
        return "synonym", conf(st.form_variant, p.syn_variant)
    if st.cluster >= p.syn_cluster and st.variant >= p.syn_meaning:
        return "synonym", conf(st.variant, p.syn_meaning)
    vec = st.vec_forms >= VEC_MIN_FORMS  # enough strongest forms with a word vector to judge
    # a kind of word: its forms recur and, when vectors can tell, are not unrelated in meaning
    recurs = st.distinct <= p.sem_distinct_max * st.n and (
        not vec or p.sem_vec_veto <= 0.0 or st.vec_sim >= p.sem_vec_veto)
    if (st.ctx_prev <= p.sem_frame_ctx and st.distinct >= 3 and st.p1 < p.sem_frame_p1
            and st.shape >= p.sem_shape and st.script_mix < p.sem_mix and recurs):
        return "semantic", conf(st.shape, p.sem_shape)
    if st.p1 >= p.token_p1:
        return "token", conf(st.p1, p.token_p1)
    if st.p2 >= p.token_p2 and st.p1 >= p.token_pair_p1:
        return "token", conf(st.p2, p.token_p2)
    if (st.shape >= p.sem_shape and st.script_mix < p.sem_mix and st.ctx_prev <= p.sem_ctx_max
            and recurs):
        return "semantic", conf(st.shape, p.sem_shape)
    if vec and p.sem_vec_min < 1.0 and st.vec_sim >= p.sem_vec_min and recurs:
        return "semantic", conf(st.vec_sim, p.sem_vec_min)  # close in meaning, not in shape
    # Uninterpretable: as sure as the nearest other decision is far.
    to_token = (p.token_p2 - st.p2) / p.token_p2
    if st.shape >= p.sem_shape:
        to_semantic = (st.script_mix - p.sem_mix) / max(1 - p.sem_mix, 1e-9)
    else:
        to_semantic = (p.sem_shape - st.shape) / p.sem_shape
    return "uninterpretable", round(0.5 + 0.5 * max(0.0, min(1.0, to_token, to_semantic)), 3)


# ------------------------------------------------------------------------------ LLM judge
@dataclass
class LLMJudgeConfig:
    """An OpenAI-compatible chat endpoint that labels features (e.g. a local vLLM server)."""

    base_url: str = "http://localhost:8000/v1"  # endpoint root, ending in /v1
    model: str = "llm-judge"  # model name the server knows
    api_key_env: str = "OPENAI_API_KEY"  # name of the environment variable holding the key
    max_examples: int = 20  # examples shown per feature
    context: int = 8  # tokens either side of the max token
    temperature: float = 0.0
    timeout_s: float = 60.0

    def __post_init__(self) -> None:
        if self.max_examples < 1 or self.context < 0:
            raise ValueError("LLMJudgeConfig: max_examples must be ≥ 1 and context ≥ 0")


JUDGE_PROMPT = """You label features of a sparse autoencoder on a Japanese-English language model.
Each example shows the text around the token where the feature fires most, marked [[like this]].
Answer with one JSON object {"label": L, "confidence": C} where L is one of
"token" (one token or word form), "synonym" (variants or translations of one word: spelling,
inflection, Japanese/English), "semantic" (different words sharing a meaning or topic),
"uninterpretable" (no common pattern), and C is your confidence in [0, 1].

Examples:
"""


@dataclass
class LLMJudgeBackend:
    """Asks an LLM judge; the ``openai`` client is imported only when a feature is classified."""

    config: LLMJudgeConfig = field(default_factory=LLMJudgeConfig)
    client: object | None = None  # injected in tests; built lazily otherwise

    def prompt(self, examples: Sequence[Sequence]) -> str:
        lines = []
        for w in list(examples)[: self.config.max_examples]:
            if not w:
                continue
            i = _max_index(w)
            lo, hi = max(0, i - self.config.context), min(len(w), i + self.config.context + 1)
            text = "".join(f"[[{w[j][0]}]]" if j == i else str(w[j][0]) for j in range(lo, hi))
            lines.append("- " + text.replace("\n", "\\n"))
        return JUDGE_PROMPT + "\n".join(lines)

    def _client(self):
        if self.client is None:
            from openai import OpenAI  # lazy: optional dependency

            self.client = OpenAI(base_url=self.config.base_url,
                                 api_key=os.environ.get(self.config.api_key_env, "none"),
                                 timeout=self.config.timeout_s)
        return self.client

    def classify(self, examples: Sequence[Sequence]) -> tuple[str, float]:
        resp = self._client().chat.completions.create(  # type: ignore[attr-defined]
            model=self.config.model,
            temperature=self.config.temperature,
            messages=[{"role": "user", "content": self.prompt(examples)}],
        )
        return parse_judge_answer(resp.choices[0].message.content or "")


def parse_judge_answer(text: str) -> tuple[str, float]:
    """Read ``{"label": ..., "confidence": ...}`` from a judge's reply; unknown → uninterpretable."""
    m = re.search(r"\{.*?\}", text, flags=re.DOTALL)
    try:
        obj = json.loads(m.group(0)) if m else {}
    except json.JSONDecodeError:
        obj = {}
    label = obj.get("label") if isinstance(obj, dict) else None
    if label not in LABELS:
        return "uninterpretable", 0.0
    try:
        c = float(obj.get("confidence", 0.5))
    except (TypeError, ValueError):
        c = 0.5
    return label, min(1.0, max(0.0, c))


# ------------------------------------------------------------------------------------ API
_DEFAULT: RuleBackend | None = None


def default_backend() -> RuleBackend:
    """The shared :class:`RuleBackend` with the shipped parameters (built on first use)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = RuleBackend()
    return _DEFAULT


def backend_from_params(path: str | Path | None, field_name: str = "granularity_params",
                        ) -> RuleBackend:
    """A :class:`RuleBackend` with thresholds from ``path`` (``label --fit``'s output); the
    shared default backend when ``path`` is None. Bad files raise a one-line ``UserError``."""
    from llmjp_ckpt.errors import UserError

    if path is None:
        return default_backend()
    try:
        return RuleBackend(params=RuleParams.load(path))
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise UserError(f"{field_name}: {path}: expected a thresholds file written by "
                        f"`llmjp-ckpt label --fit` ({exc})") from None


def classify(examples: Sequence[Sequence], backend: Backend | None = None) -> tuple[str, float]:
    """Label a feature's examples: ``(label, confidence)``, label one of :data:`LABELS`."""
    return (backend or default_backend()).classify(examples)
