"""``genrobust verify-vnnlib`` on a real competition benchmark, against the answers its tools published.

Every instance of ``../shared/vnncomp/mnist_fc`` (fully connected ReLU networks, clipped L∞ pixel balls) is
answered by :func:`genrobust.verify.vnnlib.answer` under each configuration, one process, ``--threads`` torch
threads, ``--seconds`` per instance:

* ``bounds``: sound bounds on the whole box and the attack, no branching (``max_boxes = 1``);
* ``bab``: branch and bound as the command runs it (ReLU splits with β-CROWN bounds in pixel space; on these
  dense networks α-CROWN on the hidden layers' inputs at the root and FSB's choice among 4 candidates; after
  10 s undecided, hidden neurons proved stable and the others' intervals narrowed first,
  :func:`genrobust.verify.vnnlib.stabilise`);
* ``bab-nostab``: ``bab`` without the stabilisation (the branch and bound alone for the whole budget);
* ``bab-notighten``: ``bab`` whose stabilisation only proves neurons stable (``tighten_hidden=False``), without
  narrowing the intervals of those that change sign;
* ``bab-babsr``: ``bab`` splitting BaBSR's top neuron (no FSB estimates), the ablation of FSB;
* ``bab-fsb2``: ``bab`` with FSB's estimates of 2 candidates instead of 4 (half the children's plain passes);
* ``bab-plain``: ``bab-babsr`` without α-CROWN on the hidden layers (plain refinement), the ablation of α;
* ``bab-beta``: ``bab`` with β optimised as itself instead of β times its neuron's interval width (the ablation
  of ``BoundOptions.beta_per_width``);
* ``bab-cuts``: ``bab`` with cuts inferred from the split domains it proves (``VerifyOptions.cuts = 64``,
  BICCOS's inferred cuts without their strengthening);
* ``bab-pairs``: ``bab`` with the multi-neuron relaxation of the root's 32 costliest unstable ReLUs (their pairs'
  hull facets as cuts, ``VerifyOptions.pair_neurons = 32``, PRIMA's k = 2 in GCP-CROWN's way);
* ``input``: branch and bound on the input box instead (``branch="latent"``: halve pixels), the ablation.

Per network and ε it prints how many instances each configuration decides (unsat + sat), how many answers
contradict the published ones (``wrong``: must be 0), and the mean seconds; the ``decided`` ratio against
``bounds`` measured in the same run. With ``--work DIR`` each instance's answer is saved as it comes, and a
rerun only runs what is missing.

``--seconds published`` gives every instance its published timeout (120 s or 300 s) instead of one budget.
``--workers N`` gives each instance N processes (the competition's set-up is one instance at a time on the whole
machine: N = the cores), over which the stabilisation spreads its neurons' branch and bound; run one benchmark
process then, not one per core. ``--decidable`` skips the instances no tool decided.

    python benchmarks/bench_vnncomp.py [--seconds 30|published] [--configs bounds,bab,input]
                                       [--nets 256x2,256x4,256x6] [--threads 1] [--workers 1] [--work DIR]
                                       [--open-in EARLIER.json] [--decidable]
                                       [--out docs/vnncomp-mnist-fc.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from collections import defaultdict
from pathlib import Path

import torch

CONFIGS = ("bounds", "bab", "bab-nostab", "bab-notighten", "bab-babsr", "bab-fsb2", "bab-plain", "bab-beta", "bab-cuts",
           "bab-pairs", "input")  # fmt: skip


def options(config: str, seconds: float):
    from genrobust.bounds.engine import BoundOptions
    from genrobust.verify import VerifyOptions

    plain = BoundOptions(alpha_intermediate=0)
    return {
        "bounds": VerifyOptions(max_boxes=1, max_seconds=seconds),
        "bab": VerifyOptions(max_boxes=100_000, max_seconds=seconds),
        "bab-nostab": VerifyOptions(max_boxes=100_000, max_seconds=seconds),
        "bab-notighten": VerifyOptions(max_boxes=100_000, max_seconds=seconds),
        "bab-babsr": VerifyOptions(max_boxes=100_000, max_seconds=seconds, branch_candidates=1),
        "bab-fsb2": VerifyOptions(max_boxes=100_000, max_seconds=seconds, branch_candidates=2),
        "bab-plain": VerifyOptions(bounds=plain, max_boxes=100_000, max_seconds=seconds, branch_candidates=1),
        "bab-beta": VerifyOptions(bounds=BoundOptions(beta_per_width=False), max_boxes=100_000, max_seconds=seconds),
        "bab-cuts": VerifyOptions(max_boxes=100_000, max_seconds=seconds, cuts=64),
        "bab-pairs": VerifyOptions(max_boxes=100_000, max_seconds=seconds, pair_neurons=32),
        "input": VerifyOptions(branch="latent", max_boxes=100_000, max_seconds=seconds, give_up=None),
    }[config]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bench", default=str(Path(__file__).resolve().parents[2] / "shared" / "vnncomp" / "mnist_fc"))
    ap.add_argument("--seconds", default="30", help="seconds per instance, or 'published' (each its own timeout)")
    ap.add_argument("--configs", default=",".join(CONFIGS))
    ap.add_argument("--nets", default="256x2,256x4,256x6")
    ap.add_argument("--open-in", default=None, help="only the instances this earlier --out (.json) left unknown")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--workers",
        type=int,
        default=1,
        help="processes each instance's stabilisation spreads its neurons over (the competition's set-up: "
        "one instance at a time on the whole machine, one process per core)",
    )
    ap.add_argument(
        "--decidable",
        action="store_true",
        help="skip the instances whose published answer is unknown (no tool decided them)",
    )
    ap.add_argument("--work", default=None, help="save each answer here and resume from them")
    ap.add_argument(
        "--reverse",
        action="store_true",
        help="last instance first (a second process on the same --work meets the first halfway)",
    )
    ap.add_argument("--out", default=None, help="write the rows and every answer to OUT (.json)")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    published = a.seconds == "published"
    try:
        ok = published or float(a.seconds) > 0
    except ValueError:
        ok = False
    if not ok:
        ap.error(f"--seconds takes a number > 0 or 'published', not {a.seconds}")
    if a.workers < 1:
        ap.error(f"--workers takes a whole number ≥ 1, not {a.workers}")
    from genrobust.execute import open_workers
    from genrobust.models.onnx_import import import_onnx
    from genrobust.verify.vnnlib import answer, parse_vnnlib

    bench = Path(a.bench)
    with open(bench / "expected.csv", newline="") as f:
        instances = [r for r in csv.DictReader(f) if any(f"mnist-net_{n}.onnx" in r["onnx"] for n in a.nets.split(","))]
    if a.open_in:
        earlier = json.loads(Path(a.open_in).read_text())["answers"]
        still = {(r["onnx"], r["vnnlib"]) for r in earlier if r["answer"] == "unknown"}
        instances = [r for r in instances if (r["onnx"], r["vnnlib"]) in still]
    if a.decidable:
        instances = [r for r in instances if r["expected"] in ("sat", "unsat")]
    if a.reverse:
        instances.reverse()
    work = Path(a.work) if a.work else None
    if work is not None:
        work.mkdir(parents=True, exist_ok=True)
    nets: dict[str, torch.nn.Module] = {}
    answers = []
    pool = open_workers(workers=a.workers) if a.workers > 1 else None
    for config in a.configs.split(","):
        for r in instances:
            seconds = float(r["timeout"]) if published else float(a.seconds)
            spread = f"-w{a.workers}" if a.workers > 1 else ""
            key = f"{config}-s{a.seconds}{spread}-{Path(r['onnx']).stem}-{Path(r['vnnlib']).stem}"
            path = work / f"{key}.json" if work else None
            if path is not None and path.exists():
                answers.append(json.loads(path.read_text()))
                continue
            if r["onnx"] not in nets:
                nets[r["onnx"]] = import_onnx(bench / r["onnx"])
            prop = parse_vnnlib((bench / r["vnnlib"]).read_text())
            t = time.perf_counter()
            got = answer(nets[r["onnx"]], prop, options=options(config, seconds),
                         stabilise_hidden=config != "bab-nostab", tighten_hidden=config != "bab-notighten",
                         workers=pool)  # fmt: skip
            row = {"config": config, "onnx": r["onnx"], "vnnlib": r["vnnlib"], "answer": got.result,
                   "expected": r["expected"], "seconds": time.perf_counter() - t, "budget": seconds}  # fmt: skip
            if path is not None:
                path.write_text(json.dumps(row) + "\n")
            answers.append(row)
            print(json.dumps(row), flush=True)
    groups: dict[tuple, list[dict]] = defaultdict(list)
    for row in answers:
        eps = Path(row["vnnlib"]).stem.rsplit("_", 1)[1]
        groups[(Path(row["onnx"]).stem.removeprefix("mnist-net_"), eps, row["config"])].append(row)
        groups[("all", "", row["config"])].append(row)
    budget = "each instance's published timeout" if published else f"{float(a.seconds):g} s per instance"
    if pool is not None:
        pool.close()
    print(f"mnist_fc, {budget}, {a.threads} thread(s), {a.workers} worker process(es) per instance")
    print(f"{'net':<7} {'ε':>5} {'config':<7} {'n':>3} {'unsat':>6} {'sat':>4} {'unknown':>8} {'wrong':>6} "
          f"{'decided':>8} {'× bounds':>9} {'mean s':>7}")  # fmt: skip
    table = []
    for (net, eps, config), rows in sorted(groups.items(), key=lambda kv: (kv[0][0] == "all", kv[0])):
        n = len(rows)
        count = {v: sum(r["answer"] == v for r in rows) for v in ("unsat", "sat", "unknown")}
        decisive = ("sat", "unsat")
        wrong = sum(
            r["answer"] in decisive and r["expected"] in decisive and r["answer"] != r["expected"] for r in rows
        )
        decided = count["unsat"] + count["sat"]
        base = groups.get((net, eps, "bounds"))
        ratio = decided / max(1, sum(r["answer"] != "unknown" for r in base)) if base else float("nan")
        mean = sum(r["seconds"] for r in rows) / n
        table.append({"net": net, "eps": eps, "config": config, "n": n, **count, "wrong": wrong, "decided": decided,
                      "mean_s": mean})  # fmt: skip
        print(f"{net:<7} {eps:>5} {config:<7} {n:>3} {count['unsat']:>6} {count['sat']:>4} {count['unknown']:>8} "
              f"{wrong:>6} {decided:>8} {ratio:>9.2f} {mean:>7.2f}")  # fmt: skip
    if a.out:
        out = a.out if a.out.endswith(".json") else a.out + ".json"
        Path(out).write_text(json.dumps({"args": vars(a), "rows": table, "answers": answers}, indent=1) + "\n")


if __name__ == "__main__":
    main()
