"""The verifier: local checks of latent ε-boxes (sound bounds, branch and bound, re-checked attacks) and the
global (ε, δ)-robustness estimate built on them."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..errors import GenrobustError
from .local import CERTIFIED, FALSIFIED, SPLITS, STATUS_NAMES, UNKNOWN, LocalResult, LocalVerifier, VerifyOptions
from .robustness import ClassRobustness, EpsEstimate, RobustnessResult, global_robustness

__all__ = [
    "CERTIFIED",
    "FALSIFIED",
    "SPLITS",
    "STATUS_NAMES",
    "UNKNOWN",
    "ClassRobustness",
    "EpsEstimate",
    "LocalResult",
    "LocalVerifier",
    "RobustnessResult",
    "VerifyOptions",
    "global_robustness",
    "verify_ball",
]


def verify_ball(
    classifier: nn.Module,
    generator: nn.Module | None,
    center: torch.Tensor,
    *,
    eps: float | Sequence[float],
    label: int | None = None,
    options: VerifyOptions | None = None,
    seed: int = 0,
    device: str | torch.device | None = None,
) -> LocalResult:
    """Check one box: every z′ with ‖z′ − center‖∞ ≤ ε has C(G(z′)) = ``label`` (default: C(G(center))).

    ``generator`` is one class's generator (``family[c]``); with ``generator=None`` the box is in pixel space
    around the image ``center`` (any shape the classifier takes), clipped to [0, 1]. Returns a
    :class:`LocalResult` with one ball: ``status[0, e]`` is 1 (certified), −1 (falsified, with the witness in
    ``witness[0, e]``) or 0 (unknown) for each ε, in increasing order.
    """
    if not isinstance(center, torch.Tensor) or not center.is_floating_point():
        raise GenrobustError("center must be a float tensor (a latent of shape (d,), or an image)")
    if generator is None:
        shape = tuple(center.shape[1:]) if center.ndim == 4 else tuple(center.shape)
        z = center.reshape(1, -1)
        verifier = LocalVerifier(classifier, None, input_shape=shape, options=options, device=device)
    else:
        z = center.reshape(1, -1) if center.ndim == 1 else center
        if z.ndim != 2 or z.shape[0] != 1:
            raise GenrobustError(f"center must be one latent of shape (d,), got {tuple(center.shape)}")
        verifier = LocalVerifier(classifier, generator, latent_dim=z.shape[1], options=options, device=device)
    if label is None:
        label = int(verifier._classify(z.to(verifier.device)).item())
    return verifier.run(z, [label], eps, seed=seed)
