"""What the site reads from a run: metrics, the features table, lineages, top-N examples."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmjp_ckpt.config import read_json
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.site.config import SiteConfig
from llmjp_ckpt.tokens import TokenText


@dataclass
class Member:
    """One feature of one SAE at one checkpoint."""

    step: int
    sae_id: str
    feature: int


@dataclass
class Lineage:
    name: str
    members: list[Member] = field(default_factory=list)


# --- reading the run ------------------------------------------------------------------------
def load_metrics(saes: dict[int, dict[str, Path]]) -> dict[tuple[int, str], dict[str, Any]]:
    """``{(step, sae_id): metrics.json}`` (empty dict where an SAE has none)."""
    out = {}
    for step, by_id in saes.items():
        for sid, folder in by_id.items():
            p = folder / "metrics.json"
            out[(step, sid)] = read_json(p) if p.is_file() else {}
    return out


def load_features_table(run: Path) -> Any:
    """``RUN/analysis/features.parquet`` as a DataFrame."""
    import pandas as pd

    from llmjp_ckpt.features import COLUMNS

    path = run / "analysis" / "features.parquet"
    if not path.is_file():
        raise UserError(f"{path}: missing (run `llmjp-ckpt features --run {run}` first)")
    df = pd.read_parquet(path)
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{path}: column(s) {missing} missing; expected {COLUMNS}")
    return df


def load_lineages(run: Path, max_lineages: int | None = None) -> list[Lineage]:
    """Lineages from the compare stage: ``RUN/analysis/lineages/<sae_id>.parquet``.

    Each file is a long table (``chain``, ``checkpoint``, ``feature``, ...): one row per chain
    member. The longest chains come first (ties: the smallest chain id), each SAE family in
    turn, at most ``max_lineages`` in all.
    """
    import pandas as pd

    per_family: list[list[Lineage]] = []
    for path in sorted((run / "analysis" / "lineages").glob("*.parquet")):
        try:
            df = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises several types for a bad file
            raise UserError(f"{path}: unreadable parquet ({exc.__class__.__name__})") from exc
        missing = {"chain", "checkpoint", "feature"} - set(df.columns)
        if missing:
            raise UserError(f"{path}: column(s) {sorted(missing)} missing; expected chain, checkpoint, feature")
        sid = path.stem
        sizes = df.groupby("chain").size().reset_index(name="n")
        order = sizes.sort_values(["n", "chain"], ascending=[False, True])["chain"].tolist()
        groups = {int(c): g for c, g in df.groupby("chain")}
        per_family.append([
            Lineage(f"{sid} #{int(c)}", [Member(int(s), sid, int(f)) for s, f in
                                        zip(groups[int(c)]["checkpoint"], groups[int(c)]["feature"])])
            for c in order[: max_lineages if max_lineages is not None else len(order)]
        ])
    out: list[Lineage] = []
    for i in range(max((len(f) for f in per_family), default=0)):  # round-robin over families
        out += [f[i] for f in per_family if i < len(f)]
    return out[:max_lineages] if max_lineages is not None else out


def lineage_members(lineages: list[Lineage]) -> dict[tuple[int, str], set[int]]:
    out: dict[tuple[int, str], set[int]] = {}
    for lin in lineages:
        for m in lin.members:
            out.setdefault((m.step, m.sae_id), set()).add(m.feature)
    return out


def select_features(df: Any, cfg: SiteConfig, members: set[int] = frozenset()) -> list[int]:
    """Features shown for one SAE: lineage members, the most frequent, the labelled ones."""
    live = df[df["frequency"] > 0]
    chosen = sorted(members)
    chosen += (
        live.sort_values(["frequency", "feature"], ascending=[False, True])["feature"]
        .head(cfg.n_frequent)
        .tolist()
    )
    lab = live[live["granularity"].notna() & (live["granularity"] != "uninterpretable")]
    lab = lab.sort_values(["granularity_confidence", "feature"], ascending=[False, True])
    chosen += lab["feature"].head(cfg.n_labelled).tolist()
    seen: set[int] = set()
    return [int(f) for f in chosen if not (int(f) in seen or seen.add(int(f)))]


# --- examples -------------------------------------------------------------------------------
@dataclass
class Example:
    tokens: list[str]  # display text per token
    acts: list[float]


def store_examples(store: Any, feature: int, tt: TokenText, n: int) -> list[Example]:
    """The top ``n`` examples of a feature from a top-N store, as display text."""
    t, first = store.t, int(store.meta["first_position"])
    wins = t["top_windows"][feature].tolist()
    acts = t["top_token_acts"][feature].float()
    out = []
    for j, w in enumerate(wins[:n]):
        if w < 0:
            continue
        row = int((t["window_ids"] == w).nonzero()[0, 0])
        ids = t["window_tokens"][row].tolist()
        shown = tt.display(ids, hide_bos=True)[first:]
        out.append(Example(shown, acts[j].tolist()[: len(shown)]))
    return out


def dashboard_tokens(store: Any, features: list[int], test: Any, per_feature: int = 20) -> Any:
    """The windows sae-dashboard computes a SAE's pages from: the store's top ``per_feature``
    windows of each page's feature (sae-dashboard shows 20 top sequences) and the ``test``
    windows (context for its histograms), by window id. Each page's top example is then the
    store's: the store's top window is the highest over all test windows, and it is here."""
    import torch

    t = store.t
    wins = t["top_windows"][features, :per_feature].reshape(-1)
    wins = torch.unique(wins[wins >= 0])
    rows = torch.searchsorted(t["window_ids"], wins)
    by_id = dict(zip(wins.tolist(), t["window_tokens"][rows].long()))
    by_id.update({i: test[i].long() for i in range(len(test)) if i not in by_id})
    return torch.stack([by_id[i] for i in sorted(by_id)])


def check_store_current(store: Any, folder: Path) -> None:
    """A :class:`UserError` unless ``store`` was computed from the SAE now in ``folder``."""
    from llmjp_ckpt.saes.dead import weights_hash

    have, want = store.meta.get("sae_weights_hash"), weights_hash(folder)
    if have != want:
        raise UserError(f"{store.path / 'features.json'}: sae_weights_hash {have} but the SAE in "
                        f"{folder} has {want}; expected a current top-N store (rerun "
                        "`llmjp-ckpt features`)")


def inputs_fingerprint(run: Path) -> dict[str, Any]:
    """Size and mtime of what the site reads, so a rerun notices new inputs."""
    out = {}
    pats = ["analysis/features.parquet", "analysis/transitions.json", "analysis/lineages/*.parquet",
            "analysis/figures/*", "features/iter_*/*/features.json", "saes/iter_*/*/metrics.json"]
    for pat in pats:
        for p in sorted(run.glob(pat)):
            if p.is_file():
                st = p.stat()
                out[str(p.relative_to(run))] = [st.st_size, st.st_mtime_ns]
    return out


def resolve_token_text(rf: RunFolder, token_text: TokenText | None, model: Any = None) -> TokenText:
    """The run's tokenizer: given, else the data stage's ``tokenizer``, else the model's."""
    run = rf.root
    if token_text is not None:
        return token_text
    data = rf.stage_record("data") or {}
    tok = (data.get("config") or {}).get("tokenizer")
    if tok and Path(tok).exists():  # a relative path holds when run from the same folder
        return TokenText.load(tok)
    if model is not None and getattr(model, "tokenizer", None) is not None:
        return TokenText.from_hf(model.tokenizer)
    raise UserError(f"{run / 'manifest.json'}: no tokenizer found (data stage config 'tokenizer'); "
                    "pass one with --tokenizer")
