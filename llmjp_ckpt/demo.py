"""The whole pipeline on the toy world: toy -> data -> SAEs -> features -> compare -> site.

Every stage records itself in ``OUT/manifest.json`` and is skipped when already done with the
same config, so an interrupted demo resumes where it stopped.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from llmjp_ckpt import atomic
from llmjp_ckpt.config import build, read_json, read_yaml
from llmjp_ckpt.data.config import DataConfig
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.models.registry import discover_steps
from llmjp_ckpt.resources import CONFIG_DIR
from llmjp_ckpt.runfolder import RunFolder
from llmjp_ckpt.saes.config import TrainConfig

if TYPE_CHECKING:
    from llmjp_ckpt.toy.config import ToyConfig

log = logging.getLogger(__name__)
TOY_STAGE = "toy"
PLANTED_STAGE = "planted"


def toy_stage_config(quick: bool, seed: int, tokenizer: str = "sentencepiece") -> tuple[dict, ToyConfig]:
    """The toy stage's manifest config (seed, size, tokenizer kind, the world's fingerprint) and
    the :class:`~llmjp_ckpt.toy.ToyConfig` it builds."""
    from llmjp_ckpt.toy import default_config, quick_config
    from llmjp_ckpt.toy.config import world_fingerprint

    toy_cfg = quick_config(tokenizer=tokenizer) if quick else default_config(tokenizer=tokenizer)
    return {"quick": quick, "seed": seed, "tokenizer": tokenizer, "world": world_fingerprint(toy_cfg)}, toy_cfg


def ensure_toy(run: RunFolder, quick: bool, seed: int, tokenizer: str = "sentencepiece") -> Path:
    """Make the toy world in ``OUT/toy`` unless it is already there for this seed, size and
    tokenizer kind (``sentencepiece`` or ``byte-bpe``)."""
    from llmjp_ckpt.data.corpus import STAGE as DATA
    from llmjp_ckpt.features.analyze import STAGE as FEATURES
    from llmjp_ckpt.saes.training import STAGE as TRAIN
    from llmjp_ckpt.toy import make_toy

    toy_dir = run.path("toy")
    cfg, toy_cfg = toy_stage_config(quick, seed, tokenizer)
    later = [s for s in (DATA, TRAIN, FEATURES) if (run.stage_record(s) or {}).get("status") == "done"]
    if later and not run.is_done(TOY_STAGE, cfg):  # later stages do not hash the toy: never mix two worlds
        raise UserError(f"{run.root}: its {', '.join(later)} stages were built on another toy world (seed, size, "
                        "tokenizer or version of the toy); use a new --out, or delete the folder")
    with run.stage(TOY_STAGE, cfg, outputs=[toy_dir / "toy.json"]) as stage:
        if stage.skipped:
            return toy_dir
        info = make_toy(toy_dir, quick=quick, seed=seed, config=toy_cfg)
        stage.info.update(steps=info["steps"], layer=info["layer"], hook=info["hook"])
    return toy_dir


def score_planted(run: RunFolder, toy_dir: Path) -> Path:
    """The toy's planted timeline (``toy/planted_timeline.json``, written if missing) and the
    SAEs' recovery scored against it (``analysis/planted_recovery.json`` and its figure)."""
    from llmjp_ckpt.toy.recovery import FILE, write_recovery
    from llmjp_ckpt.toy.timeline import FILE as TIMELINE
    from llmjp_ckpt.toy.timeline import write_timeline

    out = run.path("analysis", FILE)
    cfg = {s: (run.stage_record(s) or {}).get("config_hash") for s in (TOY_STAGE, "features", "compare")}
    with run.stage(PLANTED_STAGE, cfg, outputs=[out, toy_dir / TIMELINE]) as stage:
        if stage.skipped:
            return out
        if not (toy_dir / TIMELINE).is_file():  # a toy built before the timeline existed
            write_timeline(toy_dir)
        write_recovery(run.root, toy_dir)
        stage.info.update(outputs=[str(out.relative_to(run.root))])
    return out


def demo_configs(toy_dir: str | Path, quick: bool = False) -> tuple[DataConfig, TrainConfig]:
    """The demo's (DataConfig, TrainConfig) from configs/demo/, with the toy folder's paths and steps."""
    toy = Path(toy_dir).resolve()
    configs = CONFIG_DIR  # packaged, so an installed copy finds them too
    data = read_yaml(configs / "data" / "demo.yaml") | {
        "tokenizer": str(toy / "tokenizer"),
        "corpus_root": str(toy / "corpus"),
    }
    train = read_yaml(configs / "demo" / ("train_quick.yaml" if quick else "train.yaml"))
    info = read_json(toy / "toy.json") if (toy / "toy.json").is_file() else {}
    steps = info.get("steps") or discover_steps(toy / "checkpoints")
    if not steps:
        raise UserError(f"{toy / 'checkpoints'}: no iter_XXXXXXX checkpoints: run `llmjp-ckpt toy` first")
    layer = info.get("layer") or info.get("hook_layer")
    if layer is None and isinstance(info.get("hook"), str):
        layer = int(info["hook"].split(".")[1]) + 1
    train["model"] = {**train["model"], "steps": [int(s) for s in steps], "checkpoint_root": str(toy / "checkpoints")}
    train["hook_layer"] = int(layer or train.get("hook_layer", 1))
    return build(DataConfig, data, "configs/data/demo.yaml"), TrainConfig.from_dict(train, "configs/demo")


def run_demo(out: str | Path = "runs/demo", quick: bool = False, seed: int = 0,
             tokenizer: str = "sentencepiece") -> Path:
    """Run every stage into ``out``; return the path of the site's ``index.html``.

    ``tokenizer`` is the toy's tokenizer kind: ``sentencepiece`` (LLM-jp's) or ``byte-bpe``.
    """
    from llmjp_ckpt.compare import compare_run
    from llmjp_ckpt.data.corpus import prepare_data
    from llmjp_ckpt.features.analyze import analyze_run
    from llmjp_ckpt.saes.training import train_run
    from llmjp_ckpt.site import build_site
    from llmjp_ckpt.toy.planted import planted_agreement

    run = RunFolder(out)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t0
        now = time.perf_counter()
        timings[name] = round(now - t0, 1)
        t0 = now
        print(f"[demo] {name}: {timings[name]} s", flush=True)

    toy_dir = ensure_toy(run, quick, seed, tokenizer)
    lap("toy")
    data_cfg, train_cfg = demo_configs(toy_dir, quick)
    prepare_data(data_cfg, run.root)
    lap("prepare-data")
    train_run(train_cfg, run.root)
    lap("train")
    analyze_run(run.root)
    lap("features")
    compare_run(run.root)
    lap("compare")
    score_planted(run, toy_dir)
    lap("planted")
    index = build_site(run.root)
    lap("site")
    planted = planted_agreement(run.root, toy_dir)
    atomic.write_json(run.path("analysis", "planted_language.json"), planted)
    print(f"[demo] planted-concept features: {planted['features_covered']}; language agreement "
          f"paper {planted['agree_paper']}, script {planted['agree_script']}", flush=True)
    atomic.write_json(run.path("demo_timings.json"), timings)
    return index
