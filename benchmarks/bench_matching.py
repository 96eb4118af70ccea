"""P4: matching two 32,768-feature SAEs (d_in 2,048) end to end vs the bare similarity product.

Two SAE folders are written in SAELens format: B is a random permutation of 60 % of A's
features with noise (cosine 0.9), the rest fresh random directions. Measured in one run:

- ``bare``: the similarity matrix product alone, ``A_unit @ B_unit.T`` (one dense GEMM);
- ``ours``: ``load_decoder`` × 2 + ``match_decoders`` (blockwise GEMM with row top-k, auction
  on the candidate graph) + writing the CSV;
- ``dense+exact``: dense GEMM + scipy ``linear_sum_assignment``; at 32,768² it needs the full
  float64 matrix (8 GiB) and hours of Hungarian, so it is timed at ``--exact-sizes`` (default
  4,096 and 8,192) together with ``ours`` at the same sizes.

Run (uses all cores torch sees; this machine has 2):

    .venv/bin/python benchmarks/bench_matching.py [--n 32768] [--d-in 2048] [--exact-sizes 4096 8192] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file


def planted(n: int, d: int, seed: int = 0, frac: float = 0.6, cos: float = 0.9):
    g = torch.Generator().manual_seed(seed)
    unit = lambda x: torch.nn.functional.normalize(x, dim=1)
    A = unit(torch.randn(n, d, generator=g))
    m = int(frac * n)
    src = torch.randperm(n, generator=g)[:m]
    noise = torch.randn(m, d, generator=g)
    noise = unit(noise - (noise * A[src]).sum(1, keepdim=True) * A[src])
    B = torch.cat([cos * A[src] + (1 - cos**2) ** 0.5 * noise, unit(torch.randn(n - m, d, generator=g))])
    perm = torch.randperm(n, generator=g)
    truth = np.full(n, -1)
    truth[src.numpy()] = torch.argsort(perm).numpy()[:m]
    # decoders are not unit-norm in practice: give rows random norms
    scale = 0.5 + torch.rand(n, 1, generator=g)
    return A * scale, B[perm] * scale[torch.randperm(n, generator=g)], truth


def write(folder: Path, W: torch.Tensor) -> Path:
    import json

    folder.mkdir(parents=True)
    save_file({"W_dec": W.contiguous()}, str(folder / "sae_weights.safetensors"))
    cfg = {"d_in": W.shape[1], "d_sae": W.shape[0], "metadata": {"hook_name": "blocks.11.hook_resid_post"}}
    (folder / "cfg.json").write_text(json.dumps(cfg), encoding="utf-8")
    return folder


def time_ours(fa: Path, fb: Path, out: Path, **cfg):
    from llmjp_ckpt.compare.decoders import load_decoder
    from llmjp_ckpt.compare.matching import MatchConfig, match_decoders, write_matches_csv

    t = time.perf_counter()
    r = match_decoders(load_decoder(fa, require_counts=False), load_decoder(fb, require_counts=False),
                       MatchConfig(**cfg))
    write_matches_csv(r, out)
    return time.perf_counter() - t, r


def time_bare(A: torch.Tensor, B: torch.Tensor) -> float:
    An = torch.nn.functional.normalize(A, dim=1)
    Bn = torch.nn.functional.normalize(B, dim=1)
    t = time.perf_counter()
    S = An @ Bn.T
    dt = time.perf_counter() - t
    del S
    return dt


def time_exact(A: torch.Tensor, B: torch.Tensor):
    from scipy.optimize import linear_sum_assignment

    t = time.perf_counter()
    S = (torch.nn.functional.normalize(A, dim=1) @ torch.nn.functional.normalize(B, dim=1).T).double().numpy()
    gain = np.clip(S, 0.0, None)
    ri, ci = linear_sum_assignment(gain, maximize=True)
    return time.perf_counter() - t, float(gain[ri, ci].sum())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32768)
    ap.add_argument("--d-in", type=int, default=2048)
    ap.add_argument("--exact-sizes", type=int, nargs="*", default=[4096, 8192])
    ap.add_argument("--repeat", type=int, default=1, help="interleaved repetitions of bare vs ours")
    args = ap.parse_args()
    import llmjp_ckpt.compare.matching  # noqa: F401 - import time (sae_lens via llmjp_ckpt) is not matching time

    print(f"torch threads: {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        A, B, truth = planted(args.n, args.d_in)
        fa, fb = write(tmp / "a", A), write(tmp / "b", B)
        ratios = []
        for rep in range(args.repeat):  # interleaved, so both sides see the same machine load
            bare = time_bare(A, B)
            ours, r = time_ours(fa, fb, tmp / "m.csv")
            ratios.append(ours / bare)
            rec = float(((r.partner == truth) & r.shared & (truth >= 0)).sum() / (truth >= 0).sum())
            wrong = int((r.shared & (truth >= 0) & (r.partner != truth)).sum() + (r.shared & (truth < 0)).sum())
            print(f"[{rep + 1}] n={args.n} d_in={args.d_in}: bare GEMM {bare:.1f} s | ours end to end "
                  f"{ours:.1f} s (method {r.method}) | ratio {ours / bare:.2f} | planted recovered "
                  f"{rec:.2%}, wrong {wrong}", flush=True)
        print(f"median ratio over {args.repeat}: {float(np.median(ratios)):.2f}")
        for n in args.exact_sizes:
            A2, B2, _ = planted(n, args.d_in, seed=1)
            fa2, fb2 = write(tmp / f"a{n}", A2), write(tmp / f"b{n}", B2)
            t_ours, r2 = time_ours(fa2, fb2, tmp / f"m{n}.csv", method="sparse")
            S2 = (torch.nn.functional.normalize(A2, dim=1) @ torch.nn.functional.normalize(B2, dim=1).T)
            m = np.flatnonzero(r2.partner >= 0)
            ours_total = float(S2[m, r2.partner[m]].double().sum())
            t_exact, exact_total = time_exact(A2, B2)
            print(f"n={n}: ours (sparse) {t_ours:.1f} s | dense GEMM + exact Hungarian {t_exact:.1f} s | "
                  f"total similarity ours/exact {ours_total / exact_total:.5f}")


if __name__ == "__main__":
    main()
