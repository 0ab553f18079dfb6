"""The per-class Monte Carlo loop shared by correctness and robustness: same samples whatever the chunk, exact stops."""

import pytest
import torch

import genrobust as gr
from genrobust.sampling import check_classes, latents, run_classes


def test_chunks_see_the_seeded_latents_in_order_whatever_their_size():
    seen = {}
    for chunk in (7, 50, 1000):
        runs = run_classes([2, 5], 3, lambda c, z, ids: (c, z, ids), n=130, seed=9, chunk=chunk)
        for run in runs:
            assert not run.stopped and all(c == run.cls for c, _, _ in run.parts)
            assert [i for _, _, ids in run.parts for i in ids] == list(range(130))
            z = torch.cat([z for _, z, _ in run.parts])
            assert torch.equal(z, latents(9, run.cls, 130, 3))
            seen.setdefault(run.cls, z)
            assert torch.equal(seen[run.cls], z)
    assert not torch.equal(seen[2], seen[5])  # classes draw from their own streams


def test_the_stop_rule_ends_a_class_after_the_chunk_that_decides():
    made = []

    def stop_rule(c):
        made.append(c)
        return lambda part: c == 1 and part[-1] >= 25  # class 1 stops in the chunk holding sample 25

    runs = run_classes([0, 1], 2, lambda c, z, ids: ids, n=100, seed=0, chunk=10, stop_rule=stop_rule)
    assert made == [0, 1]
    assert not runs[0].stopped and len(runs[0].parts) == 10
    assert runs[1].stopped and runs[1].parts[-1] == list(range(20, 30))


def test_check_classes_names_the_mistake():
    assert check_classes(None, 3) == [0, 1, 2]
    with pytest.raises(gr.GenrobustError, match="classes is empty"):
        check_classes([], 3)
    with pytest.raises(gr.GenrobustError, match=r"class 3 out of range 0\.\.2"):
        check_classes([0, 3], 3)
    with pytest.raises(gr.GenrobustError, match="out of range"):
        check_classes([1.5], 3)


def test_sequential_correctness_counts_exactly_the_samples_its_decision_saw():
    clf, gens = gr.load_classifier("mnist-small"), gr.load_generators("mnist-gan")
    seq = gr.global_correctness(clf, gens, n=4000, classes=[1], sequential=True, batch_size=300).classes[0]
    assert seq.decided_at is not None and seq.n == seq.decided_at and seq.n % 300 != 0  # cut inside a chunk
    fixed = gr.global_correctness(clf, gens, n=seq.n, classes=[1], batch_size=128).classes[0]
    assert (fixed.correct, fixed.n, fixed.confident) == (seq.correct, seq.n, seq.confident)
    assert (fixed.ci_low, fixed.ci_high) == (seq.ci_low, seq.ci_high)
