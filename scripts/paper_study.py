"""The study end to end on real LLM-jp-3-1.8B checkpoints, stage by stage (resumable).

Needs the six HF-format checkpoints under LLMJP_CKPT_ROOT (iter_0000010 ... iter_0988240) and
llm-jp-corpus v3 ja_wiki + en_wiki under the `corpus_root` of configs/data/paper.yaml.
Usage: python scripts/paper_study.py [RUN]   (default runs/paper)
"""

import sys

from llmjp_ckpt.compare import compare_run
from llmjp_ckpt.data.corpus import prepare_data
from llmjp_ckpt.features.analyze import analyze_run
from llmjp_ckpt.saes.training import train_run
from llmjp_ckpt.site import build_site

run = sys.argv[1] if len(sys.argv) > 1 else "runs/paper"
prepare_data("configs/data/paper.yaml", run)  # 165M tokens, 50/50 ja/en, 8:1:1, 65-token windows
train_run("configs/paper/sae.yaml", run)  # one TopK SAE per checkpoint: x16, K 32, Scalar norm
analyze_run(run)  # top-N examples, language (paper + script rules), granularity
compare_run(run)  # matching, lineages, transitions, figures
print(build_site(run))  # RUN/dashboards/index.html
