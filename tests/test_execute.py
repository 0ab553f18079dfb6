"""Shards on other executors: the same answers in-process, on a local pool and on a Dask cluster; a worker that
dies is replaced; a journal resumes a killed run; bad choices are refused with one clear line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

import genrobust as gr
from genrobust.cli import main
from genrobust.execute import open_workers, worker_cached
from genrobust.journal import Journal
from genrobust.sampling import run_classes


def _timeless(obj):
    """A result's JSON without what depends on the clock or on the executor: timings, the order of an attack's
    examples (fastest first), and the samples spent past a sequential stop."""
    if isinstance(obj, dict):
        if "examples" in obj and isinstance(obj["examples"], list):
            obj = {**obj, "examples": sorted(obj["examples"], key=lambda ex: (ex["start"], ex["eps"]))}
        return {k: _timeless(v) for k, v in obj.items() if "seconds" not in k and k != "spent"}
    if isinstance(obj, list):
        return [_timeless(v) for v in obj]
    return obj


def _three_estimates(clf, gens, executor) -> dict:
    correctness = gr.global_correctness(clf, gens, n=1500, classes=[0, 8], seed=3, shard_size=512, executor=executor)
    robustness = gr.global_robustness(clf, gens, eps=[0.01], n=4, classes=[8], chunk=2, seed=1,
                                      executor=executor)  # fmt: skip
    attack = gr.realistic_adversarial(clf, gens, source=8, eps=[0.3, 0.6], n_starts=12, steps=8, shard_size=5,
                                      executor=executor)  # fmt: skip
    return {"correctness": correctness.to_dict(), "robustness": _timeless(robustness.to_dict()),
            "attack": _timeless(attack.to_dict()), "examples": len(attack.examples())}  # fmt: skip


@pytest.mark.slow
def test_in_process_a_local_pool_and_a_dask_cluster_give_identical_results():
    """One thread per shard everywhere (float32 sums over other thread counts may differ in their last bits)."""
    from distributed import Client, LocalCluster

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    with open_workers(threads=1) as inline:
        here = _three_estimates(clf, gens, inline)
    assert here["examples"] > 0  # witnesses are compared too, not only counts
    assert here["robustness"]["balls"]["8"]  # and per-ball outcomes
    with open_workers(workers=2) as pool:
        assert pool.count == 2 and pool.threads == 1
        assert _three_estimates(clf, gens, pool) == here
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        with Client(cluster) as client:
            assert _three_estimates(clf, gens, client) == here
        with open_workers(scheduler=cluster.scheduler_address) as dask:  # by address, as --scheduler does
            assert dask.count == 2
            again = gr.global_correctness(clf, gens, n=1500, classes=[0, 8], seed=3, shard_size=512, executor=dask)
            assert again.to_dict() == here["correctness"]


def test_a_sequential_run_stops_at_the_same_sample_with_shards_in_flight():
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    kw = {"n": 20_000, "classes": [1, 5], "seed": 0, "sequential": True, "delta": 0.2, "shard_size": 256}
    with open_workers(threads=1) as inline:
        one = gr.global_correctness(clf, gens, executor=inline, **kw)
    with open_workers(workers=2) as pool:
        two = gr.global_correctness(clf, gens, executor=pool, **kw)
    assert _timeless(one.to_dict()) == _timeless(two.to_dict())
    assert all(c.decided_at is not None and c.n == c.decided_at < 20_000 for c in one.classes)
    for a, b in zip(one.classes, two.classes, strict=True):  # in flight past the stop: paid for, not counted
        assert a.spent == -(-a.decided_at // 256) * 256 <= b.spent <= a.spent + 4 * 256


class _Squares:
    """A toy outcome for the shard runner: picklable, deterministic, and (once) fatal to its worker."""

    def __init__(self, marker: str | None = None) -> None:
        self.marker = marker

    def __call__(self, c: int, z: torch.Tensor, ids: list[int]) -> list[float]:
        if self.marker is not None and ids[0] == 40 and not os.path.exists(self.marker):
            Path(self.marker).write_text("died once")
            os._exit(3)  # the worker process dies mid-shard
        return [float(c * 1000 + i) + float(z[j].square().sum()) for j, i in enumerate(ids)]

    @staticmethod
    def encode(part: list[float]) -> list[float]:
        return part

    @staticmethod
    def decode(obj: list[float], shard: tuple[int, int, int]) -> list[float]:
        return obj


def test_a_worker_that_dies_mid_shard_is_replaced_and_the_answer_is_unchanged(tmp_path):
    plain = run_classes([0, 2], 3, _Squares(), n=100, seed=5, chunk=20)
    with open_workers(workers=2) as pool:
        survived = run_classes([0, 2], 3, _Squares(str(tmp_path / "died")), n=100, seed=5, chunk=20, executor=pool)
    assert (tmp_path / "died").exists()  # the worker did die
    assert [r.parts for r in survived] == [r.parts for r in plain]


@pytest.mark.slow
def test_a_dask_worker_that_dies_mid_shard_is_replaced_and_the_answer_is_unchanged(tmp_path):
    """Dask's nanny restarts a worker whose process died, and the scheduler gives its shard to a worker again."""
    from distributed import Client, LocalCluster

    plain = run_classes([0, 2], 3, _Squares(), n=100, seed=5, chunk=20)
    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, Client(cluster) as client:
        survived = run_classes([0, 2], 3, _Squares(str(tmp_path / "died")), n=100, seed=5, chunk=20,
                               executor=client)  # fmt: skip
    assert (tmp_path / "died").exists()
    assert [r.parts for r in survived] == [r.parts for r in plain]


def test_shards_default_to_gpu_sizes_where_the_workers_have_gpus(tmp_path, monkeypatch):
    """With the device left to genrobust, a laptop without a GPU driving GPU workers cuts 16,384-sample shards
    (each worker picks its own device and batch); an explicit CPU keeps 1,024. The answer does not change."""
    from genrobust.execute import Workers

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    plain = gr.global_correctness(clf, gens, n=300, classes=[4], journal=tmp_path / "cpu.jsonl")
    monkeypatch.setattr(Workers, "accelerated", lambda self: True)
    gpu = gr.global_correctness(clf, gens, n=300, classes=[4], journal=tmp_path / "gpu.jsonl")
    pinned = gr.global_correctness(clf, gens, n=300, classes=[4], device="cpu", journal=tmp_path / "pin.jsonl")
    shard = {
        k: json.loads((tmp_path / f"{k}.jsonl").read_text().splitlines()[0])["shard"] for k in ("cpu", "gpu", "pin")
    }
    assert shard == {"cpu": 1024, "gpu": 16384, "pin": 1024}
    assert gpu.to_dict() == plain.to_dict() == pinned.to_dict()


def test_a_journal_resumes_where_the_run_stopped_and_counts_nothing_twice(tmp_path):
    path = tmp_path / "journal.jsonl"
    header = {"kind": "toy", "n": 100}
    whole = run_classes([0, 2], 3, _Squares(), n=100, seed=5, chunk=20)
    with Journal(path, header) as log:
        run_classes([0], 3, _Squares(), n=100, seed=5, chunk=20, journal=log)  # class 2 never ran: "killed"
    lines = path.read_text().splitlines()
    assert len(lines) == 1 + 5 and json.loads(lines[0])["kind"] == "toy"
    path.write_text("\n".join(lines[:4]) + "\n" + lines[4][: len(lines[4]) // 2])  # the kill tore line 5
    calls = []

    class Counting(_Squares):
        def __call__(self, c, z, ids):
            calls.append((c, ids[0]))
            return super().__call__(c, z, ids)

    with Journal(path, header, resume=True) as log:
        assert len(log.done) == 3  # the torn line is not a shard
        resumed = run_classes([0, 2], 3, Counting(), n=100, seed=5, chunk=20, journal=log)
    assert [r.parts for r in resumed] == [r.parts for r in whole]
    assert calls == [(0, 60), (0, 80)] + [(2, lo) for lo in range(0, 100, 20)]  # the torn shard redone, once
    assert len(path.read_text().splitlines()) == 1 + 10  # every shard once, the torn line cut off


def test_a_correctness_run_resumed_from_its_journal_gives_the_uninterrupted_answer(tmp_path):
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    kw = {"n": 2500, "classes": [2, 8], "seed": 4, "shard_size": 1000}
    whole = gr.global_correctness(clf, gens, journal=tmp_path / "j.jsonl", **kw)
    lines = (tmp_path / "j.jsonl").read_text().splitlines()
    assert len(lines) == 1 + 6
    (tmp_path / "j.jsonl").write_text("\n".join(lines[:3]) + "\n")  # killed after two shards
    resumed = gr.global_correctness(clf, gens, journal=tmp_path / "j.jsonl", resume=True, **kw)
    assert resumed.to_dict() == whole.to_dict()
    assert [c.spent for c in whole.classes] == [2500, 2500]
    assert whole.outlier_list  # the outliers' latents come back from the seed, not from the journal
    with pytest.raises(gr.GenrobustError, match="belongs to another run: seed is 4 there, 5 here"):
        gr.global_correctness(clf, gens, journal=tmp_path / "j.jsonl", resume=True, **(kw | {"seed": 5}))


def test_a_journal_refuses_another_run_and_a_missing_or_corrupt_file(tmp_path):
    path = tmp_path / "journal.jsonl"
    Journal(path, {"kind": "robustness", "n": 100, "eps": [0.01]}).close()
    with pytest.raises(gr.GenrobustError, match=r"belongs to another run: n is 100 there, 200 here"):
        Journal(path, {"kind": "robustness", "n": 200, "eps": [0.01]}, resume=True)
    with pytest.raises(gr.GenrobustError, match="already holds a run's journal"):
        Journal(path, {"kind": "robustness", "n": 100, "eps": [0.01]})
    with pytest.raises(gr.GenrobustError, match="nothing to resume: no journal at"):
        Journal(tmp_path / "other.jsonl", {"kind": "robustness"}, resume=True)
    path.write_text(path.read_text() + "{not json\n" + '{"cls": 0, "lo": 0, "hi": 1, "seconds": 0, "part": 1}\n')
    with pytest.raises(gr.GenrobustError, match="line 2 is corrupt"):
        Journal(path, {"kind": "robustness", "n": 100, "eps": [0.01]}, resume=True)
    (tmp_path / "junk.jsonl").write_text("hello\n")
    with pytest.raises(gr.GenrobustError, match="not a genrobust journal"):
        Journal(tmp_path / "junk.jsonl", {}, resume=True)


def test_bad_choices_of_workers_get_one_clear_line(tmp_path):
    runner = CliRunner()
    out = runner.invoke(main, ["correctness", "-n", "10", "--workers", "0"])
    assert out.exit_code != 0 and "--workers" in out.output and "0" in out.output
    out = runner.invoke(main, ["correctness", "-n", "10", "--resume"])
    assert out.exit_code != 0 and "--resume needs --out" in out.output
    out = runner.invoke(main, ["correctness", "-n", "10", "--resume", "--out", str(tmp_path / "none")])
    assert out.exit_code == 1 and "nothing to resume: no journal at" in out.output
    t0 = time.perf_counter()
    out = runner.invoke(main, ["correctness", "-n", "10", "--scheduler", "tcp://127.0.0.1:9"])
    assert out.exit_code == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in out.output
    assert time.perf_counter() - t0 < 60
    with pytest.raises(gr.GenrobustError, match="executor must be"):
        open_workers(executor=3)
    with pytest.raises(gr.GenrobustError, match="threads must be"):
        open_workers(threads=0)


def test_worker_cache_builds_once_per_key():
    built = []
    for _ in range(3):
        assert worker_cached(("test", 1), lambda: built.append(1) or "model") == "model"
    assert built == [1]


@pytest.mark.slow
def test_a_killed_robustness_run_resumes_to_the_uninterrupted_answer(tmp_path):
    args = ["robustness", "--eps", "0.01", "-n", "2", "--classes", "0,1,2,8", "--max-boxes", "4", "--quiet",
            "--device", "cpu", "--seed", "2"]  # fmt: skip
    cli = [sys.executable, "-m", "genrobust"]
    whole = tmp_path / "whole"
    subprocess.run([*cli, *args, "--out", str(whole)], check=True, capture_output=True, timeout=600)
    killed = tmp_path / "killed"
    proc = subprocess.Popen([*cli, *args, "--out", str(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    journal = killed / "journal.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline and proc.poll() is None:  # kill it once two of its four shards are written
        if journal.exists() and len(journal.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (killed / "result.json").exists()
    done = len(journal.read_text().splitlines()) - 1
    assert 2 <= done < 4
    again = subprocess.run([*cli, *args, "--out", str(killed)], capture_output=True, text=True, timeout=60)
    assert again.returncode == 1 and "--resume" in again.stderr  # never silently restarted over the journal
    subprocess.run([*cli, *args, "--out", str(killed), "--resume"], check=True, capture_output=True, timeout=600)
    a, b = (json.loads((d / "result.json").read_text()) for d in (whole, killed))
    assert _timeless(a) == _timeless(b)
    assert len(journal.read_text().splitlines()) == 1 + 4  # no shard counted twice


def test_a_conditional_family_runs_each_class_on_its_own_network_in_workers():
    """The classes of a conditional family share their weights and differ by a one-hot buffer outside the
    state_dict: the content hash must tell them apart, or a worker reuses class 0's network for every class."""
    from genrobust.execute import content_hash

    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-cgan")
    assert len({content_hash(gens[c]) for c in range(10)}) == 10
    run = dict(n=256, classes=[0, 3], seed=2, shard_size=128)
    here = gr.global_correctness(clf, gens, **run)
    with open_workers(workers=2) as pool:
        there = gr.global_correctness(clf, gens, **run, executor=pool)
    # Workers run one torch thread each. On some hosts (stop 53's Xeon with AMX) float32 convolutions round
    # differently with one and with two threads (an outlier's confidence 0.8068991 against 0.8068988), so the
    # bit-for-bit comparison is made at the workers' thread count; at any count the answer itself is the same.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = gr.global_correctness(clf, gens, **run)
    finally:
        torch.set_num_threads(threads)
    assert there.to_dict() == one.to_dict()
    assert [(c.cls, c.share.k, c.share.n) for c in there.classes] == [
        (c.cls, c.share.k, c.share.n) for c in here.classes
    ]
    assert [(o.cls, o.latent, o.predicted) for o in there.outlier_list] == [
        (o.cls, o.latent, o.predicted) for o in here.outlier_list
    ]
    assert min(c.estimate for c in there.classes) > 0.9  # class 3 judged on threes, not on class 0's zeros


@pytest.mark.slow  # about a minute: the pool respawns its dying workers before it gives up
def test_a_script_that_starts_workers_without_a_main_guard_is_told_why_they_die(tmp_path):
    import subprocess
    import sys

    script = tmp_path / "unguarded.py"
    script.write_text(
        "import genrobust as gr\n"
        "from genrobust.execute import open_workers\n"
        "clf, gens = gr.load_classifier('mnist-small'), gr.load_generators('mnist-gan')\n"
        "with open_workers(workers=2) as pool:\n"
        "    gr.global_correctness(clf, gens, n=64, classes=[0], shard_size=32, executor=pool)\n"
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert proc.returncode != 0
    # the exception's own line (the interpreter may print a resource tracker's warning about the dead pool after it)
    raised = [line for line in proc.stderr.splitlines() if line.startswith(("genrobust.", "GenrobustError"))]
    assert raised and 'if __name__ == "__main__":' in raised[-1], proc.stderr[-2000:]


def test_a_sigterm_ends_the_command_and_its_local_workers_with_it(tmp_path):
    """A SIGTERM to the command (``kill``, a batch system's time limit) ends it as Ctrl-C does: its worker
    processes are terminated with it (they used to go on computing their shards as orphans) and the journal
    stays for ``--resume``."""
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "genrobust", "correctness", "-n", "400000", "--workers", "2", "--quiet",
           "--out", str(out)]  # fmt: skip
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)  # fmt: skip
    children: list[int] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (len(children) >= 3 and (out / "journal.jsonl").exists()):
        time.sleep(0.5)  # the pool's two workers and multiprocessing's resource tracker
        found = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
        children = [int(pid) for pid in found]
    assert len(children) >= 3, proc.stderr.read().decode() if proc.poll() is not None else children
    time.sleep(3)  # the workers are computing shards now
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 128 + signal.SIGTERM

    def running(pid: int) -> bool:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return False
        return state != "Z"

    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(running(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if running(pid)]
    assert (out / "journal.jsonl").exists()
