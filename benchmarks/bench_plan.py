"""P7b: the memory planner's SAE terms against the measured CPU peak, side by side.

For a few small shapes (one SAE, three SAEs in one pass, two SAEs with a 4-way split step), a
fresh process measures the peak resident set of the SAE steps (``MALLOC_MMAP_THRESHOLD_`` low so
glibc returns large blocks at once) minus the resident set before the SAEs exist, and the
planner's estimate (``sae_state + step``) is printed beside it with their ratio. A memory figure
depends on the allocator and the machine, so it is measured here, never asserted in a test.

    .venv/bin/python benchmarks/bench_plan.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

MEASURE = r"""
import json, resource, sys
import torch
torch.set_num_threads(1)
import llmjp_ckpt
from tests.saes.test_plan import _trainer
d, n, batch, count, m = (int(a) for a in sys.argv[1:6])
x = torch.randn(batch, d)
def rss():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
base = rss()
trainers = [_trainer(d, n, batch, i) for i in range(count)]
for t in trainers:
    t.micro_batches_by_id = {"s": m}
    t.n_forward_passes_since_fired[: n // 2] = 10  # aux loss on
outs = {i: t.step(x) for i, t in enumerate(trainers)}  # kept, as MultiSAETrainer.fit keeps them
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print(json.dumps({"measured": peak - base}))
"""


def estimate(d: int, n: int, batch: int, count: int, m: int) -> int:
    from llmjp_ckpt.saes import plan as P
    from llmjp_ckpt.saes.config import SaeSpec, TrainConfig

    cfg = TrainConfig.from_dict(
        {
            "model": {"source": "x"},
            "runner": {
                "train_batch_size_tokens": batch,
                "training_tokens": 100 * batch,
                "n_batches_in_buffer": batch // 64,
                "dead_feature_window": 10,
            },
        }
    )
    est = P.Estimator(cfg, P.ModelShape(1, d, 1, d, 8), P.Throughput.default("cpu", "float32"))
    saes = [P.PlannedSae(SaeSpec(n // d, 4, 1e-3, "scalar"), n, m) for _ in range(count)]
    _, parts = est.peak(saes)
    return int(parts["sae_state"] + parts["step"])


def main() -> None:
    d, n, batch = 128, 4096, 4096
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "OMP_NUM_THREADS": "1"}
    print("SAEs split | estimate MiB | measured MiB | ratio")
    for count, m in ((1, 1), (3, 1), (2, 4)):
        out = subprocess.run(
            [sys.executable, "-c", MEASURE, *map(str, (d, n, batch, count, m))],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        measured = json.loads(out.stdout.strip().splitlines()[-1])["measured"]
        est = estimate(d, n, batch, count, m)
        print(f"{count} {m} | {est / 2**20:.0f} | {measured / 2**20:.0f} | {est / measured:.2f}")


if __name__ == "__main__":
    main()
