"""What each meaning source adds to the `synonym` label on a finished toy run (`llmjp-ckpt demo`).

Usage: python scripts/toy_synonym_sources.py [RUN] [--threshold 0.6 --threshold 0.5] [--json OUT]
(default RUN runs/demo). Prints, per SAE and checkpoint, precision / recall of `synonym` for the
planted variant and translation features and the synonym share of all live features, with the
rules alone, with JMdict, and with the last checkpoint's input embeddings (llmjp_ckpt.toy.recovery).
"""

import argparse
import json
import sys

from llmjp_ckpt import atomic
from llmjp_ckpt.errors import UserError
from llmjp_ckpt.toy.recovery import synonym_sources

ap = argparse.ArgumentParser()
ap.add_argument("run", nargs="?", default="runs/demo")
ap.add_argument("--threshold", type=float, action="append", help="W_E cosine (repeatable; default 0.6)")
ap.add_argument("--json", help="also write the result here")
args = ap.parse_args()
try:
    res = synonym_sources(args.run, args.threshold or [0.6])
except UserError as exc:
    print(f"error: {exc}", file=sys.stderr)
    sys.exit(2)
if args.json:
    atomic.write_json(args.json, res)


def cell(v: dict) -> str:
    p, r = v["precision"], v["recall"]
    return f"{'-' if p is None else f'{p:.2f}'}/{'-' if r is None else f'{r:.2f}'} ({v['synonym_share']})"


print("sae  step  planted  " + "  ".join(res["sources"]) + "   [precision/recall (synonym share)]")
for sae_id, steps in res["saes"].items():
    for step, row in steps.items():
        first = next(iter(row.values()))
        print(sae_id, step, first["actual"], "  ".join(cell(v) for v in row.values()))
print(json.dumps({"embeddings_of_step": res["embeddings_of_step"]}))
