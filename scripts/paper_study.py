"""The study end to end on real LLM-jp-3-1.8B checkpoints, stage by stage (resumable).

Needs the six HF-format checkpoints under LLMJP_CKPT_ROOT (iter_0000010 ... iter_0988240) and
llm-jp-corpus v3 ja_wiki + en_wiki under the `corpus_root` of configs/data/paper.yaml.
Usage: python scripts/paper_study.py [RUN] [--device cuda] [--dtype bfloat16]   (default runs/paper)
Every model-running stage gets the same device and LM dtype (SAEs keep fp32 weights); neither is
part of a result hash, so changing them never redoes a finished stage.
"""

import argparse
import dataclasses

from llmjp_ckpt.compare import compare_run
from llmjp_ckpt.data.corpus import prepare_data
from llmjp_ckpt.features.analyze import FeaturesConfig, analyze_run
from llmjp_ckpt.saes.config import TrainConfig
from llmjp_ckpt.saes.training import train_run
from llmjp_ckpt.site import SiteConfig, build_site

ap = argparse.ArgumentParser()
ap.add_argument("run", nargs="?", default="runs/paper")
ap.add_argument("--device", default="cuda")  # one GPU
ap.add_argument("--dtype", default="bfloat16")  # the LM in bf16; TF32 for the fp32 SAEs
ap.add_argument("--device-memory", default=None)  # e.g. 80GiB; default: the GPU's free memory
args = ap.parse_args()
run, dev = args.run, {"device": args.device, "dtype": args.dtype}

prepare_data("configs/data/paper.yaml", run)  # 165M tokens, 50/50 ja/en, 8:1:1, 65-token windows
cfg = TrainConfig.from_yaml(
    "configs/paper/sae.yaml"
)  # one TopK SAE per checkpoint: x16, K 32, Scalar
cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **dev))
train_run(cfg, run, device_memory=args.device_memory)  # passes planned by llmjp_ckpt.saes.plan
analyze_run(
    run, dataclasses.replace(FeaturesConfig.from_yaml("configs/features.yaml"), **dev)
)  # top-N, labels
compare_run(run)  # matching, lineages, transitions, figures (decoder weights only: CPU is fine)
print(build_site(run, dataclasses.replace(SiteConfig.from_yaml("configs/site.yaml"), **dev)))
