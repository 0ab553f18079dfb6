"""Memory layout for fast batched inference on the CPU."""

from __future__ import annotations

import copy

import torch
from torch import nn

from .layers import ChannelsLast


def inference_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` laid out for fast batched inference; the caller's model is left untouched.

    Convolutions with NHWC ("channels_last") weights and inputs run ~1.5× faster on CPU than the default layout
    (benchmarks/bench_correctness.py), while training is faster in the default one. The copy is wrapped in
    :class:`~genrobust.models.layers.ChannelsLast`, which converts the input, so no network's ``forward`` has to
    know about layouts. The layout changes only the order of floating-point additions; counts stay independent
    of the batch size (tests/test_estimate.py). A model without convolutions is returned as it is, and so is
    any network but genrobust's own :class:`ConvClassifier`: a user's ``forward`` may call ``x.view(n, -1)``,
    which refuses NHWC tensors.
    """
    from .classifiers import ConvClassifier

    if not isinstance(model, ConvClassifier) or not any(isinstance(m, nn.Conv2d) for m in model.modules()):
        return model
    out = ChannelsLast(copy.deepcopy(model).to(memory_format=torch.channels_last))
    if hasattr(model, "genrobust_meta"):  # what it was trained on travels with it (mismatch warnings)
        out.genrobust_meta = model.genrobust_meta
    return out
