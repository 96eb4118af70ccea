"""The ``compare`` stage: match consecutive checkpoints, follow lineages, count transitions.

Reads ``RUN/saes/iter_*/<sae_id>/`` and ``RUN/analysis/features.parquet``; writes
``RUN/analysis/transitions.json``, ``RUN/analysis/lineages.json``,
``RUN/analysis/lineages/<sae_id>.parquet``, ``RUN/analysis/matches/<sae_id>/*.csv`` and
``RUN/analysis/figures/``. The stage is recorded in the run manifest and skipped when it is
done with the same config and the same inputs.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from llmjp_ckpt import atomic, config, plotting
from llmjp_ckpt.compare import figures as figs
from llmjp_ckpt.compare import layers, peers, seeds
from llmjp_ckpt.compare import lineages as lin
from llmjp_ckpt.compare import transitions as tr
from llmjp_ckpt.compare.decoders import check_comparable, load_decoder
from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, write_matches_csv
from llmjp_ckpt.config import read_json
from llmjp_ckpt.devices import check_device, without_runtime
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.runfolder import RunFolder, sae_folders, step_dir
from llmjp_ckpt.saes.dead import weights_hash

log = logging.getLogger(__name__)
STAGE = "compare"


@dataclass
class CompareConfig:
    """Settings of the compare stage (configs/compare.yaml)."""

    match: MatchConfig = field(default_factory=MatchConfig)
    related_threshold: float = 0.5  # cosine at/above which features count as related (splits, merges, mix origins)
    language_column: str = "language_paper"  # which language label the mix-origin analysis uses
    png: bool = True  # also export PNG figures (skipped with a log line when no browser)
    peer_dir: str | None = None  # imported peer SAEs (iter_*/<peer_id>/; RUN-relative); default RUN/peer if present

    def __post_init__(self) -> None:
        if isinstance(self.match, dict):
            self.match = config.build(MatchConfig, self.match, "compare config: match")
        if self.language_column not in tr.LANGUAGE_COLUMNS:
            raise UserError(f"compare language_column={self.language_column!r}; "
                            f"expected one of {tr.LANGUAGE_COLUMNS}")
        if not -1.0 <= self.related_threshold <= 1.0:
            raise UserError(f"compare related_threshold={self.related_threshold}; expected a cosine")

    @classmethod
    def from_yaml(cls, path: str | Path) -> CompareConfig:
        return config.load(cls, path)


def find_saes(run_dir: Path) -> dict[str, list[tuple[int, Path]]]:
    """``{sae_id: [(step, folder), ...]}`` sorted by step, from ``RUN/saes/iter_*/<sae_id>/``."""
    out: dict[str, list[tuple[int, Path]]] = {}
    for step, sae_id, folder in sae_folders(run_dir):
        out.setdefault(sae_id, []).append((step, folder))
    return {k: sorted(v) for k, v in out.items()}


def _labels(df, sae_id: str, step: int, column: str) -> dict[int, str]:
    d = df[(df["sae_id"] == sae_id) & (df["checkpoint"] == step)]
    return dict(zip(d["feature"].tolist(), tr._labels(d, column).tolist()))


def _check_rows_current(rows, want: str, folder: Path) -> None:
    """A :class:`UserError` when features.parquet rows came from other weights than the SAE's."""
    if "sae_weights_hash" not in rows.columns or rows.empty:
        return  # a table from before the column: nothing to check against
    have = sorted({str(h) for h in rows["sae_weights_hash"].dropna()} - {want})
    if have:
        raise UserError(f"features.parquet: rows of {folder} have sae_weights_hash {have[0]} but "
                        f"the SAE has {want}; expected current rows (rerun `llmjp-ckpt features`)")


def granularity_confusion(run: RunFolder) -> list[list[int]] | None:
    """The granularity classifier's pooled LOCO confusion that the features stage used (its
    manifest record; else the thresholds file its config names, the shipped one by default), so
    the share intervals carry the classifier's errors; ``None`` (one log line) when unknown."""
    from llmjp_ckpt.labels.uncertainty import load_confusion

    rec = run.stage_record("features") or {}
    if "granularity_confusion" in rec:  # what the features stage used (None: latents only)
        return rec["granularity_confusion"]
    path = ((rec.get("config") or {}).get("features") or {}).get("granularity_params")
    try:
        return load_confusion(path)
    except (OSError, ValueError) as exc:
        log.warning("granularity intervals cover latents only: %s", str(exc).splitlines()[0])
        return None


def _family(run: RunFolder, sae_id: str, series: list[tuple[int, Path]], df, cfg: CompareConfig,
            confusion: list[list[int]] | None = None) -> dict:
    """Everything for one SAE family across its checkpoints; returns its JSON part and figures."""
    steps = [s for s, _ in series]
    fam_df = df[df["sae_id"] == sae_id]
    decoders = [load_decoder(p) for _, p in series]  # alive masks: saes.dead, the one definition
    for (step, folder), d in zip(series, decoders):
        _check_rows_current(fam_df[fam_df["checkpoint"] == step], d.weights_hash, folder)
    alive = {s: d.alive.numpy() for s, d in zip(steps, decoders)}
    out: dict[str, Any] = {"checkpoints": steps, "per_checkpoint": tr.per_checkpoint(fam_df, alive, confusion),
                           "pairs": [],
                           "dead_latents": {str(s): int((~a).sum()) for s, a in alive.items()},
                           "sae_weights_hash": {str(s): d.weights_hash
                                                for s, d in zip(steps, decoders)}}
    if len(steps) < 2:
        out["note"] = f"only one checkpoint (step {steps[0]}): nothing to compare"
        return out
    for d in decoders[1:]:
        check_comparable(decoders[0], d)
    matches = []
    for t in range(len(steps) - 1):
        a, b = steps[t], steps[t + 1]
        log.info("%s: matching step %d → %d", sae_id, a, b)
        m = match_decoders(decoders[t], decoders[t + 1], cfg.match)
        matches.append(m)
        write_matches_csv(m, run.path("analysis", "matches", sae_id, f"{step_dir(a)}__{step_dir(b)}.csv"))
        shared = np.flatnonzero(m.shared)
        pairs = np.stack([shared, m.partner[shared]], axis=1)
        sims = m.similarity[m.partner >= 0]
        out["pairs"].append({
            "from": a, "to": b, "method": m.method,
            "sae_weights_hash": {"from": decoders[t].weights_hash,
                                 "to": decoders[t + 1].weights_hash},
            **lin.pair_events(m, cfg.related_threshold),
            "mean_similarity": float(np.mean(sims)) if sims.size else None,
            "similarities": [round(float(x), 4) for x in sims],
            "flows": tr.flows(fam_df[fam_df["checkpoint"] == a], fam_df[fam_df["checkpoint"] == b], pairs),
            "mix_origins": lin.mix_origins(m, cfg.related_threshold,
                                           _labels(df, sae_id, a, cfg.language_column),
                                           _labels(df, sae_id, b, cfg.language_column)),
        })
    chains = lin.chains(steps, decoders, matches)
    buf = io.BytesIO()
    chains.to_parquet(buf, index=False)
    atomic.write_bytes(run.path("analysis", "lineages", f"{sae_id}.parquet"), buf.getvalue())
    lengths = chains.groupby("chain").size()
    out["lineages"] = {
        "chains": int(lengths.size),
        "chains_spanning_all": int((lengths == len(steps)).sum()),
        "mean_length": float(lengths.mean()),
        "median_drift_to_final": {
            str(s): (None if g.dropna().empty else float(g.median()))
            for s, g in chains.groupby("checkpoint")["drift_to_final"]
        },
        "index_aligned_drift": {str(s): d for s, d in zip(steps, lin.index_aligned_drift(decoders))},
    }
    return out


def _figures(sae_id: str, fam: dict, cfg: CompareConfig) -> dict:
    safe = plotting.safe_name(sae_id)
    out = {f"shares_{safe}": figs.shares_figure(fam["per_checkpoint"], sae_id)}
    if fam["pairs"]:
        flows = [{"from": p["from"], "to": p["to"], **p["flows"]} for p in fam["pairs"]]
        for col in (cfg.language_column, "granularity"):
            out[f"sankey_{col}_{safe}"] = figs.sankey_figure(flows, col, sae_id)
        out[f"match_similarity_{safe}"] = figs.similarity_histogram(
            {f"{p['from']}→{p['to']}": p["similarities"] for p in fam["pairs"]}, cfg.match.threshold, sae_id)
        out[f"mix_origins_{safe}"] = figs.mix_origins_figure(
            [{"from": p["from"], "to": p["to"], **p["mix_origins"]} for p in fam["pairs"]], sae_id)
    return out


def compare_run(run_dir: str | Path, config: CompareConfig | None = None, force: bool = False) -> dict:
    """Run the compare stage on ``run_dir``; returns the content of ``transitions.json``."""
    cfg = config or CompareConfig()
    check_device(cfg.match.device, "compare config: match.device")  # before anything is written
    run = RunFolder(run_dir)
    series = find_saes(run.root)
    proot = peers.peer_root(run.root, cfg.peer_dir)
    peer_saes = peers.find_peers(proot) if proot is not None else {}
    feats_path = run.path("analysis", "features.parquet")
    df = tr.load_features(feats_path)
    st = feats_path.stat()
    # the SAEs' weight hashes: a retrained SAE (same id) reruns the matching
    hashes = {f"{step_dir(s)}/{k}": weights_hash(p) for k, v in series.items() for s, p in v}
    cfg_dict = without_runtime(dataclasses.asdict(cfg))  # the match device: not hashed
    if cfg.peer_dir is None:
        cfg_dict.pop("peer_dir")  # runs without peers keep their stage hash
    if peer_saes:  # a re-imported peer reruns the comparison
        cfg_dict["peer_weights_hashes"] = {f"{step_dir(s)}/{k}": weights_hash(p)
                                           for k, v in peer_saes.items() for s, p in v.items()}
    confusion = granularity_confusion(run)  # the share intervals depend on it: hashed
    stage_cfg = {**cfg_dict, "granularity_confusion": confusion,
                 "inputs": {k: [s for s, _ in v] for k, v in series.items()},
                 "sae_weights_hashes": hashes,
                 "features_parquet": {"size": st.st_size, "mtime_ns": st.st_mtime_ns}}
    out_path = run.path("analysis", "transitions.json")
    all_steps = sorted({s for v in series.values() for s, _ in v})
    with run.stage(STAGE, stage_cfg, force=force, outputs=[out_path], checkpoints=all_steps) as stage:
        if stage.skipped:
            return {**read_json(out_path), "skipped": True}
        result: dict[str, Any] = {"threshold": cfg.match.threshold,
                                  "related_threshold": cfg.related_threshold,
                                  "language_column": cfg.language_column,
                                  "families": {}, "notes": [], "figures": {}}
        fig_objs = {}
        for sae_id, ser in series.items():
            fam = _family(run, sae_id, ser, df, cfg, confusion)
            result["families"][sae_id] = fam
            if "note" in fam:
                result["notes"].append(f"{sae_id}: {fam['note']}")
            fig_objs.update(_figures(sae_id, fam, cfg))
        # the seed baseline (saes.seeds twins): cross-seed shared fraction beside each pair's
        result["seed_baseline"] = seeds.seed_baseline(series, result["families"], cfg.match,
                                                      run.path("analysis", "matches", "seeds"))
        fig_objs.update(seeds.figures(result["seed_baseline"]))
        # a layer sweep: each cell's per-layer families side by side (layer x checkpoint)
        result["layers"] = layers.layer_view(series, result["families"])
        fig_objs.update(layers.figures(result["layers"]))
        # ours against imported peer SAEs (the study's): how many of theirs ours finds
        result["peers"] = peers.compare_peers(series, peer_saes, cfg.match, run.path("analysis", "matches", "peer"))
        fig_objs.update(peers.figures(result["peers"]))
        result["figures"] = figs.write_figures(fig_objs, run.path("analysis", "figures"), png=cfg.png)
        lineages = {k: v.get("lineages") for k, v in result["families"].items()}
        atomic.write_json(run.path("analysis", "lineages.json"), lineages)
        atomic.write_json(out_path, result)
    return result
