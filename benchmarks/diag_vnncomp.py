"""Where one ``mnist_fc`` instance spends its budget: :func:`genrobust.verify.vnnlib.answer`'s three phases, timed.

The phases are run as ``answer`` runs them: the plain branch and bound for ``FIRST_SECONDS``, then
:func:`~genrobust.verify.vnnlib.stabilise` (one line per hidden layer: neurons seen with one sign, flipped by
the PGD, proved at the root and by the branch and bound, ends narrowed, seconds) for ``--share`` of what is left,
then the branch and bound again with the facts. The facts can be saved (``--save F.safetensors``) and the last
phase rerun from them alone (``--facts F.safetensors``) to compare variants of it without paying for the rest.

    python benchmarks/diag_vnncomp.py 256x6 prop_5_0.05 [--seconds 300] [--share 0.6] [--neuron-seconds 2]
                                      [--no-tighten | --tighten-share 0.2 --tighten-pool 1.0]
                                      [--save facts.safetensors | --facts facts.safetensors] [--threads 1]
                                      [--workers 1]
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("net", help="256x2, 256x4 or 256x6")
    ap.add_argument("prop", help="e.g. prop_5_0.05")
    ap.add_argument("--bench", default=str(Path(__file__).resolve().parents[2] / "shared" / "vnncomp" / "mnist_fc"))
    ap.add_argument("--seconds", type=float, default=300.0)
    ap.add_argument("--share", type=float, default=None, help="stabilise's share (default STABILISE_SHARE)")
    ap.add_argument("--neuron-seconds", type=float, default=None, help="default NEURON_SECONDS")
    ap.add_argument("--no-tighten", action="store_true")
    ap.add_argument("--tighten-share", type=float, default=None, help="default TIGHTEN_SHARE")
    ap.add_argument("--tighten-pool", type=float, default=None, help="default TIGHTEN_POOL")
    ap.add_argument("--save", default=None, help="write the facts stabilise proved here (.safetensors)")
    ap.add_argument("--facts", default=None, help="skip to the last phase with these facts (.safetensors)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--workers", type=int, default=1, help="processes for the stabilisation and the last phase")
    a = ap.parse_args()
    if a.workers < 1:
        ap.error(f"--workers takes a whole number ≥ 1, not {a.workers}")
    torch.set_num_threads(a.threads)
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    from genrobust.execute import open_workers
    from genrobust.models.onnx_import import import_onnx
    from genrobust.verify import VerifyOptions
    from genrobust.verify import vnnlib as V

    bench = Path(a.bench)
    model = import_onnx(bench / "onnx" / f"mnist-net_{a.net}.onnx")
    prop = V.parse_vnnlib((bench / "vnnlib" / f"{a.prop}.vnnlib").read_text())
    opts = VerifyOptions(max_boxes=100_000, max_seconds=a.seconds)
    if a.tighten_share is not None:
        V.TIGHTEN_SHARE = a.tighten_share
    if a.tighten_pool is not None:
        V.TIGHTEN_POOL = a.tighten_pool
    share = V.STABILISE_SHARE if a.share is None else a.share
    neuron = V.NEURON_SECONDS if a.neuron_seconds is None else a.neuron_seconds
    pool = open_workers(workers=a.workers) if a.workers > 1 else None
    t0 = time.perf_counter()

    def final(facts, seconds: float) -> None:
        t = time.perf_counter()
        got = V.answer(model, prop, options=replace(opts, max_seconds=seconds), facts=facts, stabilise_hidden=False,
                       workers=pool)  # fmt: skip
        print(f"final branch and bound: {got.result} in {time.perf_counter() - t:.1f} s of {seconds:.0f}", flush=True)

    if a.facts:
        try:
            flat = load_file(a.facts)
            with safe_open(a.facts, "pt") as f:
                meta = f.metadata() or {}
        except Exception as err:  # a missing, truncated or foreign file: one line, not a traceback
            ap.error(f"{a.facts} is not a safetensors file of facts: {err}")
        if (meta.get("net"), meta.get("prop")) != (a.net, a.prop):
            ap.error(f"{a.facts} holds facts of {meta.get('net')} {meta.get('prop')}, not of {a.net} {a.prop}")
        keys = {k[2:] for k in flat if k[:2] in ("lo", "hi")}
        if not keys or any(f"lo{k}" not in flat or f"hi{k}" not in flat or not k.isdigit() for k in keys):
            ap.error(f"{a.facts} does not hold facts as --save writes them (lo<k>, hi<k> for each activation k)")
        facts = {int(k): (flat[f"lo{k}"], flat[f"hi{k}"]) for k in keys}
        final(facts, a.seconds - V.FIRST_SECONDS - share * (a.seconds - V.FIRST_SECONDS))
        return
    first = min(0.5 * a.seconds, V.FIRST_SECONDS)
    got = V.answer(model, prop, options=replace(opts, max_seconds=first), stabilise_hidden=False)
    print(f"first branch and bound: {got.result} in {time.perf_counter() - t0:.1f} s", flush=True)
    if got.result != "unknown":
        return
    stats: list[dict] = []
    left = a.seconds - (time.perf_counter() - t0)
    ts = time.perf_counter()
    facts = V.stabilise(model, prop, seconds=share * left, neuron_seconds=neuron, options=opts, stats=stats,
                        tighten=not a.no_tighten, workers=pool)  # fmt: skip
    for line in stats:
        print(json.dumps(line), flush=True)
    print(f"stabilise: {time.perf_counter() - ts:.1f} s of {share * left:.0f}", flush=True)
    if a.save:
        flat = {f"lo{k}": lo.contiguous() for k, (lo, _) in facts.items()}
        flat |= {f"hi{k}": hi.contiguous() for k, (_, hi) in facts.items()}
        save_file(flat, a.save, metadata={"net": a.net, "prop": a.prop})
    final(facts, a.seconds - (time.perf_counter() - t0))
    print(f"total {time.perf_counter() - t0:.1f} s", flush=True)


if __name__ == "__main__":
    main()
