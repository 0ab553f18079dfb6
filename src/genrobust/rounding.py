"""Directed rounding in one place: the few conversions every sound bound, ε-box and witness re-check relies on.

A bound computed in float64 stays a bound in float32 only if it is rounded the right way; a box handed to an
attack must hold only points of the real box; a certificate must cover every real point of the ball. Each of these
is one function here, so that the direction of a rounding is read from a name, not re-derived at every call site.
"""

from __future__ import annotations

import math

import torch

__all__ = ["centre_radius", "inward", "outward", "real_ball", "round_down", "round_up", "widen"]


def round_up(x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """``x`` in ``dt``, rounded towards +∞ (an upper bound stays one)."""
    y = x.to(dt)
    return y if dt == x.dtype else torch.where(y.to(x.dtype) < x, torch.nextafter(y, torch.full_like(y, torch.inf)), y)


def round_down(x: torch.Tensor, dt: torch.dtype) -> torch.Tensor:
    """``x`` in ``dt``, rounded towards −∞ (a lower bound stays one)."""
    y = x.to(dt)
    return y if dt == x.dtype else torch.where(y.to(x.dtype) > x, torch.nextafter(y, torch.full_like(y, -torch.inf)), y)


def outward(lo: torch.Tensor, hi: torch.Tensor, dt: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The smallest ``dt`` box holding [lo, hi]: what a stored interval or a relaxation's intercepts need."""
    return round_down(lo, dt), round_up(hi, dt)


def inward(lo: torch.Tensor, hi: torch.Tensor, dt: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The largest ``dt`` box inside [lo, hi]: where attack candidates may live, so that every witness found in it
    lies in the real box (a bound may come out above ``hi`` where [lo, hi] holds no ``dt`` value)."""
    return round_up(lo, dt), round_down(hi, dt)


def widen(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """[lo, hi] one step wider each way in its own dtype: a result rounded to nearest becomes an enclosure."""
    return torch.nextafter(lo, torch.full_like(lo, -math.inf)), torch.nextafter(hi, torch.full_like(hi, math.inf))


def real_ball(center: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The float64 box [z − ε, z + ε] rounded outwards: it holds every real point of the ∞-ball, not only its
    float64 points (what a certificate must cover)."""
    z = center.double()
    return widen(z - eps, z + eps)


def centre_radius(lo: torch.Tensor, hi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The box [lo, hi] as centre ± radius, the radius one step up so that the (rounded) centre's box still
    holds [lo, hi]: how the bound engine takes a box."""
    center = (lo + hi) / 2
    radius = torch.maximum(hi - center, center - lo)
    return center, torch.nextafter(radius, torch.full_like(radius, math.inf))
