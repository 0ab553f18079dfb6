import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

import genrobust as gr


@settings(max_examples=50, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=0, max_size=200), seed=st.integers(0, 2**32 - 1))
def test_halves_partition_every_class(labels, seed):
    labels = np.array(labels, dtype=np.int64)
    a, b = gr.disjoint_halves(labels, seed=seed)
    assert np.intersect1d(a, b).size == 0
    np.testing.assert_array_equal(np.sort(np.concatenate([a, b])), np.arange(len(labels)))
    for c in np.unique(labels):
        na, nb = int((labels[a] == c).sum()), int((labels[b] == c).sum())
        assert na - nb in (0, 1)


def test_pooled_mnist_halves(shared_datasets):
    pooled = gr.load_dataset("mnist", "all", data_dir=shared_datasets, download=False)
    ha, hb = gr.split_halves(pooled, seed=0)
    assert len(ha) + len(hb) == 70_000
    assert np.intersect1d(ha.source_index, hb.source_index).size == 0
    counts = np.concatenate([ha.class_counts(), hb.class_counts()])
    assert counts.min() >= 3150 and counts.max() <= 3950  # "about 3,500 images per class per half"
    assert ha.split == "all/half-a"
    # Seeded: the same seed gives the same halves, another seed different ones.
    again, _ = gr.split_halves(pooled, seed=0)
    np.testing.assert_array_equal(again.source_index, ha.source_index)
    other, _ = gr.split_halves(pooled, seed=1)
    assert not np.array_equal(other.source_index, ha.source_index)
    np.testing.assert_array_equal(ha.images[0], pooled.images[ha.source_index[0]])


def test_pooled_fashion_halves_are_exactly_3500(shared_datasets):
    pooled = gr.load_dataset("fashion-mnist", "all", data_dir=shared_datasets, download=False)
    ha, hb = gr.split_halves(pooled, seed=3)
    assert ha.class_counts().tolist() == [3500] * 10
    assert hb.class_counts().tolist() == [3500] * 10
