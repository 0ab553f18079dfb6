"""Directed rounding: every conversion rounds the way its name says, checked in exact (rational) arithmetic."""

from fractions import Fraction

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from genrobust.rounding import centre_radius, inward, outward, real_ball, round_down, round_up, widen

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite)
def test_inward_boxes_lie_inside_and_outward_boxes_hold_the_interval(a, b):
    lo, hi = torch.tensor([min(a, b)], dtype=torch.float64), torch.tensor([max(a, b)], dtype=torch.float64)
    flo, fhi = outward(lo, hi)
    assert flo.dtype == torch.float32 and Fraction(float(flo)) <= Fraction(float(lo)) <= Fraction(float(hi))
    assert Fraction(float(fhi)) >= Fraction(float(hi))
    ilo, ihi = inward(lo, hi)
    assert Fraction(float(ilo)) >= Fraction(float(lo)) and Fraction(float(ihi)) <= Fraction(float(hi))
    assert round_down(lo, torch.float32) <= round_up(lo, torch.float32)
    assert round_up(lo, torch.float64) is lo  # no conversion, no rounding


@settings(max_examples=300, deadline=None)
@given(z=finite, eps=st.floats(min_value=1e-9, max_value=10.0))
def test_a_real_ball_holds_every_real_point_of_the_ball(z, eps):
    z32 = torch.tensor([z], dtype=torch.float32)
    lo, hi = real_ball(z32, eps)
    exact = Fraction(float(z32))
    assert Fraction(float(lo)) <= exact - Fraction(eps) and Fraction(float(hi)) >= exact + Fraction(eps)
    wl, wh = widen(lo, hi)
    assert wl < lo and wh > hi


@settings(max_examples=300, deadline=None)
@given(a=finite, b=finite)
def test_a_box_as_centre_and_radius_holds_the_whole_box_in_exact_arithmetic(a, b):
    lo, hi = torch.tensor([min(a, b)], dtype=torch.float64), torch.tensor([max(a, b)], dtype=torch.float64)
    c, r = centre_radius(lo, hi)
    exact_c, exact_r = Fraction(float(c)), Fraction(float(r))
    assert exact_c - exact_r <= Fraction(float(lo)) and exact_c + exact_r >= Fraction(float(hi))
