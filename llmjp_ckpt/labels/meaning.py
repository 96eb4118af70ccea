"""Word vectors for the granularity classifier: how close in meaning are a feature's strongest forms?

The source is the Japanese word2vec table (chiVe, 300 dimensions, 20 000 rows for 480 443 keys:
spaCy's pruned vectors, where a dropped word points at its nearest kept row) shipped in the PyPI
package ``ja-ginza`` (Megagon Labs, MIT; the optional extra ``meaning``). Only the package's
``vocab`` folder is read, through spaCy's own :class:`spacy.vectors.Vectors` (no pipeline, no
parser, no network; ≈ 3 s, ≈ 25 MB). Its vocabulary is mostly Japanese: common English words have
a row (guitar, host, book), many do not (album, panel); a form without a row adds no evidence.

:func:`vector_stats` gives the mean pairwise cosine of a feature's distinct strongest forms that
have a vector. When ``ja-ginza`` is absent :func:`default_vectors` returns ``None`` and logs it
once; the classifier then works without this statistic (its vector rules need a vector table).
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

VEC_FORMS = 8  # the strongest distinct forms looked up, most frequent first
VEC_MIN_FORMS = 3  # fewer forms with a vector (under 3 pairs) say nothing about a feature


class WordVectors:
    """A lookup ``form -> unit vector`` (``rows(form)`` gives a row of ``matrix``, or None)."""

    def __init__(self, rows: Callable[[str], int | None], matrix: np.ndarray, name: str = "") -> None:
        norms = np.linalg.norm(matrix, axis=1, keepdims=True)
        self.matrix = (matrix / np.where(norms > 0, norms, 1.0)).astype(np.float32)
        self._rows = rows
        self.name = name
        self._cache: dict[str, int | None] = {}

    @classmethod
    def from_table(cls, table: Mapping[str, Sequence[float]], name: str = "table") -> WordVectors:
        """From a small ``{form: vector}`` mapping (tests, a researcher's own table)."""
        forms = list(table)
        index = {f: i for i, f in enumerate(forms)}
        rows = [list(table[f]) for f in forms]
        matrix = np.asarray(rows, dtype=np.float32) if rows else np.zeros((0, 1), np.float32)
        return cls(index.get, matrix, name)

    def row(self, form: str) -> int | None:
        """The row of ``form`` (as given, then capitalised), or None."""
        hit = self._cache.get(form, -1)
        if hit != -1:
            return hit  # type: ignore[return-value]
        r = self._rows(form)
        if r is None and form[:1].islower():
            r = self._rows(form.capitalize())
        if len(self._cache) < 1 << 17:
            self._cache[form] = r
        return r


def vector_stats(names: Sequence[Sequence[str]], vectors: WordVectors) -> tuple[float, int]:
    """``(mean pairwise cosine, number of forms with a vector)`` over the first
    :data:`VEC_FORMS` distinct forms; each form is given as its names (whole word first, then
    the piece), the first name with a row counts. Under two forms with a vector: ``(0.0, k)``."""
    rows: list[int] = []
    for alias in names[:VEC_FORMS]:
        for x in alias:
            r = vectors.row(x) if x else None
            if r is not None:
                rows.append(r)
                break
    if len(rows) < 2:
        return 0.0, len(rows)
    m = vectors.matrix[rows]
    sims = [float(m[i] @ m[j]) for i, j in itertools.combinations(range(len(rows)), 2)]
    return round(sum(sims) / len(sims), 6), len(rows)


def ginza_vocab_dir() -> Path | None:
    """The ``vocab`` folder of the installed ``ja-ginza`` package, or None."""
    try:
        spec = importlib.util.find_spec("ja_ginza")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        for vocab in sorted(Path(folder).glob("ja_ginza-*/vocab")):
            if (vocab / "vectors").is_file() and (vocab / "key2row").is_file():
                return vocab
    return None


def load_ginza(vocab: str | Path) -> WordVectors:
    """The word vectors of a ``ja-ginza`` vocab folder (spaCy reads its own format)."""
    from spacy.strings import hash_string  # lazy: optional dependency
    from spacy.vectors import Vectors

    vec = Vectors().from_disk(str(vocab))
    key2row = vec.key2row

    def rows(form: str) -> int | None:
        r = key2row.get(hash_string(form))
        return None if r is None or r < 0 else int(r)

    return WordVectors(rows, np.asarray(vec.data), "ja-ginza (chiVe)")


_DEFAULT: WordVectors | None = None
_LOOKED = False


def default_vectors() -> WordVectors | None:
    """The ``ja-ginza`` word vectors when installed, else None (logged once)."""
    global _DEFAULT, _LOOKED
    if not _LOOKED:
        _LOOKED = True
        vocab = ginza_vocab_dir()
        if vocab is None:
            log.warning("ja-ginza is not installed (extra 'meaning'): granularity classifier runs "
                        "without word vectors (its vector rules are skipped)")
        else:
            try:
                _DEFAULT = load_ginza(vocab)
            except Exception as exc:  # noqa: BLE001 - any failure of the optional resource degrades
                log.warning("cannot read ja-ginza vectors in %s (%s): no word vectors", vocab, exc)
    return _DEFAULT


def null_cosine(vectors: WordVectors, q: float = 0.95, pairs: int = 200_000, seed: int = 0) -> float:
    """The ``q`` quantile of the cosine of two random distinct rows of the table: a level of
    similarity that unrelated words reach by chance only ``1 - q`` of the time. It depends on
    the vector table alone (no labels), hence an a-priori threshold for its rules."""
    m = vectors.matrix
    if len(m) < 2:
        return 1.0
    rng = np.random.default_rng(seed)
    i = rng.integers(0, len(m), size=(pairs, 2))
    i = i[i[:, 0] != i[:, 1]]
    return float(np.quantile(np.einsum("nd,nd->n", m[i[:, 0]], m[i[:, 1]]), q))


def embedder(vectors: WordVectors) -> Callable[[str], Sequence[float] | None]:
    """The table as a ``RuleBackend(embed=...)`` hook (cosine ≥ its threshold relates two forms)."""
    def embed(form: str) -> Sequence[float] | None:
        r = vectors.row(form)
        return None if r is None else vectors.matrix[r].tolist()

    return embed
