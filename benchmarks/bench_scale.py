"""Scaling out: the same estimates in this process, on a local pool of 1 and 2 worker processes, and on a Dask
``LocalCluster`` (loopback), all measured in one run on the built-in ``mnist-small`` ∘ ``mnist-gan``.

It prints, for global correctness and global robustness at their default shard sizes (1,024 samples; 32
balls, here fewer so that the run stays short: ``--balls``):

* the overhead of a shard runner against the same work in this process on one thread — a pool of one
  worker process and a Dask cluster of one single-threaded worker, so that only the executor differs
  (issue 27's targets: Dask ≤ 5% for robustness, ≤ 15% for correctness);
* the throughput of 2 local workers against 1 (ratio), the speed-up a second core gives;
* samples (or balls) per hour per core, to size a cluster.

Each configuration runs the estimate twice and keeps the faster run (the first also pays the workers'
start-up and their model caches). The answers are checked to be identical across the runners.

    python benchmarks/bench_scale.py [--samples 8192] [--balls 8] [--eps 0.01] [--out docs/scale.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable

import torch

import genrobust as gr
from genrobust.execute import open_workers


def _timeless(obj):
    if isinstance(obj, dict):
        return {k: _timeless(v) for k, v in obj.items() if "seconds" not in k}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _best(run: Callable[[], dict], repeats: int) -> tuple[float, dict]:
    best, answer = float("inf"), {}
    for _ in range(repeats):
        t0 = time.perf_counter()
        answer = run()
        best = min(best, time.perf_counter() - t0)
    return best, answer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=8192, help="correctness samples per class (2 classes)")
    parser.add_argument("--balls", type=int, default=8, help="robustness balls per class (2 classes)")
    parser.add_argument("--eps", type=float, default=0.01)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=None, help="write the figures to OUT as JSON")
    args = parser.parse_args()
    from distributed import Client, LocalCluster

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    classes = [0, 8]
    jobs = {
        "correctness": (
            lambda ex: gr.global_correctness(clf, gens, n=args.samples, classes=classes, executor=ex).to_dict(),
            args.samples * len(classes), "samples",
        ),
        "robustness": (
            lambda ex: _timeless(gr.global_robustness(clf, gens, eps=[args.eps], n=args.balls, classes=classes,
                                                      chunk=max(1, args.balls // 2), executor=ex).to_dict()),
            args.balls * len(classes), "balls",
        ),
    }  # fmt: skip
    cores = os.cpu_count() or 1
    print(f"mnist-small ∘ mnist-gan on {cores} cores; correctness {args.samples} samples × 2 classes (shards of "
          f"1,024), robustness {args.balls} balls × 2 classes at ε = {args.eps:g} (shards of "
          f"{max(1, args.balls // 2)}); best of {args.repeats}")  # fmt: skip
    rows = []
    with (
        LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
        open_workers(workers=1) as one,  # one thread per worker
        open_workers(workers=2) as two,
    ):
        torch.set_num_threads(1)
        runners = {"in-process, 1 thread": open_workers(threads=1), "pool of 1": one, "dask, 1 worker": client,
                   "pool of 2": two}  # fmt: skip
        for job, (run, units, unit) in jobs.items():
            seconds, answers = {}, {}
            for name, ex in runners.items():
                seconds[name], answers[name] = _best(lambda ex=ex, run=run: run(ex), args.repeats)
                print(f"  {job:<12} {name:<22} {seconds[name]:7.2f} s  {units / seconds[name]:10,.1f} {unit}/s",
                      flush=True)  # fmt: skip
            same = all(a == answers["in-process, 1 thread"] for a in answers.values())
            base = seconds["in-process, 1 thread"]
            row = {
                "job": job, "units": units, "unit": unit, "seconds": seconds, "identical": same,
                "overhead_pool1": seconds["pool of 1"] / base - 1,
                "overhead_dask": seconds["dask, 1 worker"] / base - 1,
                "speedup_2_workers": seconds["pool of 1"] / seconds["pool of 2"],
                "per_hour_per_core": units / base * 3600,
            }  # fmt: skip
            rows.append(row)
    print()
    print(f"{'job':<12} {'pool-1 overhead':>16} {'dask overhead':>14} {'2 vs 1 worker':>14} {'per hour per core':>18}"
          f" {'identical':>10}")  # fmt: skip
    for r in rows:
        print(f"{r['job']:<12} {r['overhead_pool1']:>16.1%} {r['overhead_dask']:>14.1%} "
              f"{r['speedup_2_workers']:>13.2f}× {r['per_hour_per_core']:>12,.0f} {r['unit']:<5} "
              f"{r['identical']!s:>10}")  # fmt: skip
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"args": vars(args), "cores": cores, "rows": rows}, fh, indent=2)


if __name__ == "__main__":
    main()
