"""The verifier on the built-in ``mnist-small`` ∘ ``mnist-gan`` (or any ``--classifier`` ∘ ``--generators``): how
many balls each ingredient decides, and at what cost.

For every ε and every configuration, the first ``--balls`` latents of each class (the correctness estimator's
centres, seed 0) are checked: certified / falsified / unknown, mean and 95th-percentile seconds per ball, and
the peak resident memory of the process that ran them (each configuration × ε runs in its own process). The
configurations are the ablation the README reports:

* ``full``: CROWN-style bounds (forward in the generator, interval + forward + backward with patches in the
  classifier, float32 refinement) with branch and bound on the latent box and PGD; a ball whose whole-box bound
  is hopeless (``VerifyOptions.give_up``, ``--give-up``) is not split;
* ``bounds-only``: the same bounds on the whole box, no splitting (``max_boxes = 1``), and PGD;
* ``interval``: interval arithmetic only, with the same splitting budget as ``full`` (every ball is split: the
  give-up rule is calibrated on CROWN bounds, and interval bounds would give up on every ball), and PGD;
* ``no-gen-backward``: ``full`` with the generator's pixels bounded by forward forms only and the margins'
  backward pass stopped at the image (the engine before the generator's backward refinement);
* ``alpha``: ``full`` with α-CROWN on the margins of every box the plain bound leaves open (5 steps);
* ``at-image``: ``full`` with the classifier's refinement passes stopped at the image (``refine_to_latent=False``;
  the default carries them on through the generator to the latent since stop 48);
* ``pool``: ``full`` with a pool of ``--mean-seconds`` per ball over each class's run: the give-up rule orders
  the balls (hopeless-looking ones attacked first and split last, with the time the others left);
* ``no-fan``, ``pool-no-fan``: ``full`` and ``pool`` with every split in two (``VerifyOptions.fan=1``): the
  default makes as many latent halvings at once as a box's bound is predicted to need;
* ``axis``, ``pool-axis``: ``full`` and ``pool`` with coordinate halvings only (``VerifyOptions.oblique=False``):
  the default cuts a box first across the direction its open neurons share (version 14);
* ``crown-slopes``: ``full`` with CROWN's adaptive lower lines on unstable ReLUs (``BoundOptions.lower_ratio=1``): the
  default leans to the flat piece (ratio 2);
* ``relu``: branch and bound on the classifier's ReLUs instead of the latent dimensions (β-CROWN splits, the
  children settled on their parent's intervals), every ball split (the give-up rule is for latent splits);
* ``auto``: per box, the latent dimension or the ReLU that the margins' pass rates higher, every ball split;
* ``cellsM`` (e.g. ``cells2``): ``full`` with each box's generator intervals the union of its 2^M cells' bounds
  (``BoundOptions.generator_cells``).
* ``rowcellsM`` (e.g. ``rowcells2``): ``full`` with every row that goes on to the latent bounded once more per
  cell of 2^M cells, through each cell's own generator relaxation (``BoundOptions.row_cells``).

    python benchmarks/bench_verify.py [--balls 100] [--classes 0,...,9] [--eps 0.01,0.03,0.05,0.1]
                                      [--max-boxes 64] [--max-seconds 30] [--out docs/verify-benchmark]
                                      [--work DIR]

With ``--work DIR`` every (configuration, ε, class) is saved as it finishes (per-ball outcomes and seconds, and
the peak memory of the process that ran it), and a rerun with the same arguments only runs what is missing:
100 balls per class is hours of CPU, so a kill loses at most one class of one configuration.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from genrobust.verify.local import GIVE_UP

CONFIGS = (
    "full",
    "bounds-only",
    "interval",
    "no-gen-backward",
    "alpha",
    "alpha-maps",
    "at-image",
    "pool",
    "no-fan",
    "pool-no-fan",
    "axis",
    "pool-axis",
    "crown-slopes",
    "relu",
    "auto",
)
#: the configurations that split and use the give-up rule
GIVE_UP_CONFIGS = (*(c for c in CONFIGS if c not in ("bounds-only", "interval", "relu", "auto")), "cells", "rowcells")


def _part_path(work: Path, config: str, eps: float, c: int, balls: int, max_boxes: int, max_seconds: float,
               split: str, give_up: float | None) -> Path:  # fmt: skip
    base = config.split("@")[0].split("-threads")[0].rstrip("0123456789.")
    rule = f"-giveup{give_up:g}" if base in GIVE_UP_CONFIGS and give_up is not None else ""
    return work / f"{config}-eps{eps:g}-class{c}-n{balls}-boxes{max_boxes}-s{max_seconds:g}-{split}{rule}.json"


def run_one(
    config: str, eps: float, classes: list[int], balls: int, max_boxes: int, max_seconds: float,
    split: str = "unstable", work: Path | None = None, give_up: float | None = None, mean_seconds: float = 5.0,
    threads: int = 2, generators: str = "mnist-gan", classifier: str = "mnist-small",
) -> dict:  # fmt: skip
    import torch

    import genrobust as gr
    from genrobust.bounds.engine import BoundOptions
    from genrobust.estimate import latents
    from genrobust.verify import LocalVerifier, VerifyOptions

    torch.set_num_threads(threads)
    clf, gens = gr.load_classifier(classifier), gr.load_generators(generators)
    opts = {
        "full": VerifyOptions(max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=give_up),
        "bounds-only": VerifyOptions(max_boxes=1, max_seconds=max_seconds, give_up=None),
        "interval": VerifyOptions(
            bounds=BoundOptions(mode="interval"), max_boxes=max_boxes, max_seconds=max_seconds, give_up=None
        ),
        "no-gen-backward": VerifyOptions(
            bounds=BoundOptions(generator_backward=False, margins_to_latent=False),
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            give_up=give_up,
        ),
        "alpha": VerifyOptions(
            bounds=BoundOptions(alpha_steps=5),
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            split=split,
            give_up=give_up,
        ),
        "alpha-maps": VerifyOptions(  # α on the last two convolutions' neurons, whole boxes only
            bounds=BoundOptions(alpha_maps=5, alpha_map_layers=2),
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            split=split,
            give_up=give_up,
        ),
        "at-image": VerifyOptions(
            bounds=BoundOptions(refine_to_latent=False),
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            split=split,
            give_up=give_up,
        ),
        "pool": VerifyOptions(
            max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=give_up, mean_seconds=mean_seconds
        ),
        "no-fan": VerifyOptions(max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=give_up, fan=1),
        "pool-no-fan": VerifyOptions(
            max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=give_up, mean_seconds=mean_seconds, fan=1
        ),
        "axis": VerifyOptions(
            max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=give_up, oblique=False
        ),
        "pool-axis": VerifyOptions(
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            split=split,
            give_up=give_up,
            mean_seconds=mean_seconds,
            oblique=False,
        ),
        "crown-slopes": VerifyOptions(
            bounds=BoundOptions(lower_ratio=1.0),
            max_boxes=max_boxes,
            max_seconds=max_seconds,
            split=split,
            give_up=give_up,
        ),
        "relu": VerifyOptions(branch="relu", max_boxes=max_boxes, max_seconds=max_seconds, give_up=None),
        "auto": VerifyOptions(branch="auto", max_boxes=max_boxes, max_seconds=max_seconds, split=split, give_up=None),
    }.get(config) or VerifyOptions(
        bounds=BoundOptions(row_cells=int(config.removeprefix("rowcells") or 2))
        if config.startswith("rowcells")
        else BoundOptions(generator_cells=int(config.removeprefix("cells") or 2)),
        max_boxes=max_boxes,
        max_seconds=max_seconds,
        split=split,
        give_up=give_up,
    )
    counts = {"certified": 0, "falsified": 0, "unknown": 0}
    seconds: list[float] = []
    peak = 0.0
    fresh = 0  # balls run now, not read back from --work (the wall time is theirs)
    t0 = time.perf_counter()
    for c in classes:
        name = f"{config}{mean_seconds:g}" if config in ("pool", "pool-no-fan", "pool-axis") else config
        name += f"-threads{threads}" if threads != 2 else ""  # timings depend on it: keep the parts apart
        name += f"@{Path(generators).parent.name or generators}" if generators != "mnist-gan" else ""
        name += f"~{Path(classifier).stem}" if classifier != "mnist-small" else ""
        path = _part_path(work, name, eps, c, balls, max_boxes, max_seconds, split, give_up) if work else None
        if path is not None and path.exists():
            part = json.loads(path.read_text())
        else:
            v = LocalVerifier(clf, gens[c], latent_dim=gens.latent_dim, options=opts)
            res = v.run(latents(0, c, balls, gens.latent_dim), [c] * balls, [eps])
            part = {"counts": res.counts()[0], "seconds": res.seconds.tolist(),
                    "status": res.status[:, 0].tolist(),
                    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}  # fmt: skip
            fresh += balls
            if path is not None:
                tmp = path.with_suffix(".tmp")
                tmp.write_text(json.dumps(part) + "\n")
                tmp.replace(path)  # atomic: a kill leaves the part whole or absent
        for k, n in part["counts"].items():
            counts[k] += n
        seconds += part["seconds"]
        peak = max(peak, part["peak_rss_mb"])
    return {
        "config": config,
        "split": split,
        "eps": eps,
        "balls": len(seconds),
        **counts,
        "mean_s": float(np.mean(seconds)),
        "p95_s": float(np.percentile(seconds, 95)),
        "wall_s": time.perf_counter() - t0,
        "fresh": fresh,
        "peak_rss_mb": peak,
        "seconds": seconds,
    }


def _merge(parts: list[dict], wall: float) -> dict:
    """One row from the rows of one configuration × ε run class by class on several worker processes: the counts
    summed, the balls' seconds pooled, the run's wall time, and the peak memory of the largest process and of the
    two largest together (two workers on two cores). The wall time per ball is over the balls run now: classes
    read back from ``--work`` took no wall time in this run (stop 69's resumed run printed 3.02 s for 5.02 s)."""
    seconds = [s for p in parts for s in p["seconds"]]
    fresh = sum(p["fresh"] for p in parts)
    peaks = sorted((p["peak_rss_mb"] for p in parts), reverse=True)
    return {
        **{k: parts[0][k] for k in ("config", "split", "eps")},
        "balls": len(seconds),
        **{k: sum(p[k] for p in parts) for k in ("certified", "falsified", "unknown")},
        "mean_s": float(np.mean(seconds)),
        "p95_s": float(np.percentile(seconds, 95)),
        "wall_s": wall,
        "wall_per_ball_s": wall / fresh if fresh else math.nan,
        "balls_run_now": fresh,
        "peak_rss_mb": peaks[0],
        "peak_two_mb": sum(peaks[:2]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--balls", type=int, default=100, help="balls per class")
    ap.add_argument("--classes", default="0,1,2,3,4,5,6,7,8,9")
    ap.add_argument("--eps", default="0.01,0.03,0.05,0.1")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--max-boxes", type=int, default=64)
    ap.add_argument("--max-seconds", type=float, default=30.0)
    ap.add_argument("--split", default="unstable", help="the full configuration's split heuristic")
    ap.add_argument(
        "--give-up",
        default=str(GIVE_UP),
        help=f"VerifyOptions.give_up of the splitting configurations ('none': split every ball; default {GIVE_UP})",
    )
    ap.add_argument("--mean-seconds", type=float, default=5.0, help="the pool configuration's seconds per ball")
    ap.add_argument("--threads", type=int, default=2, help="torch threads per process (the side-by-side runs use 1)")
    ap.add_argument("--workers", type=int, default=1,
                    help="processes that take the classes in turn (e.g. two of one thread each on two cores; "
                         "'wall s' is the run's wall time per ball, 'mean s' each ball's own)")  # fmt: skip
    ap.add_argument("--generators", default="mnist-gan", help="the generator family (a built-in name or a file)")
    ap.add_argument("--classifier", default="mnist-small", help="the classifier (a built-in name or a file)")
    ap.add_argument("--out", default=None, help="write the rows to OUT.json")
    ap.add_argument("--work", default=None, help="save each class's results here and resume from them")
    ap.add_argument("--one", default=None, help=argparse.SUPPRESS)  # internal: run one configuration here
    a = ap.parse_args()
    bad = [c for c in a.configs.split(",")
           if c not in CONFIGS and not c.removeprefix("row").removeprefix("cells").isdigit()]  # fmt: skip
    if bad:
        ap.error(f"unknown configuration(s) {', '.join(bad)}: choose from {', '.join(CONFIGS)}, cellsM or rowcellsM")
    classes = [int(c) for c in a.classes.split(",")]
    give_up = None if a.give_up.lower() == "none" else float(a.give_up)
    work = Path(a.work) if a.work else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    if a.one:
        config, eps = a.one.split("@")
        print(json.dumps(run_one(config, float(eps), classes, a.balls, a.max_boxes, a.max_seconds, a.split, work,
                                 give_up, a.mean_seconds, a.threads, a.generators, a.classifier)))  # fmt: skip
        return
    if a.workers < 1:
        ap.error(f"--workers takes a number ≥ 1, not {a.workers}")
    rows = []
    head = (f"{'config':<16} {'ε':>6} {'balls':>6} {'certified':>10} {'falsified':>10} {'unknown':>8} "
            f"{'decided':>8} {'mean s':>8} {'p95 s':>8} {'peak RSS':>9} {'wall s':>7}")  # fmt: skip
    print(f"{a.classifier} ∘ {a.generators}, classes {a.classes}, {a.balls} balls each, budget {a.max_boxes} boxes / "
          f"{a.max_seconds:g} s per ball, give-up {a.give_up}", flush=True)  # fmt: skip
    print(head, flush=True)
    for eps in [float(e) for e in a.eps.split(",")]:
        for config in a.configs.split(","):

            def one(cls: str, config: str = config, eps: float = eps) -> dict:
                cmd = [sys.executable, __file__, "--one", f"{config}@{eps}", "--balls", str(a.balls), "--classes",
                       cls, "--max-boxes", str(a.max_boxes), "--max-seconds", str(a.max_seconds),
                       "--split", a.split, "--give-up", a.give_up, "--mean-seconds", str(a.mean_seconds),
                       "--threads", str(a.threads), "--generators", a.generators, "--classifier", a.classifier,
                       *(["--work", str(work)] if work else [])]  # fmt: skip
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                return json.loads(out.splitlines()[-1])

            t0 = time.perf_counter()
            if a.workers == 1:
                r = one(a.classes)
                r["wall_per_ball_s"] = r["wall_s"] / r["fresh"] if r["fresh"] else math.nan
                r["balls_run_now"] = r.pop("fresh")
            else:  # each class in its own process, as many at a time as there are workers
                with ThreadPoolExecutor(a.workers) as pool:
                    r = _merge(list(pool.map(one, [str(c) for c in classes])), time.perf_counter() - t0)
            r.pop("seconds", None)
            rows.append(r)
            decided = (r["certified"] + r["falsified"]) / r["balls"]
            counts = f"{r['balls']:>6} {r['certified']:>10} {r['falsified']:>10} {r['unknown']:>8}"
            cost = f"{r['mean_s']:>8.2f} {r['p95_s']:>8.2f} {r['peak_rss_mb']:>7.0f} MB {r['wall_per_ball_s']:>7.2f}"
            print(f"{config:<16} {eps:>6g} {counts} {decided:>8.1%} {cost}", flush=True)
    if a.out:
        out = a.out if a.out.endswith(".json") else a.out + ".json"  # not with_suffix: "run-0.03" is no suffix
        Path(out).write_text(json.dumps({"args": vars(a), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
