"""Pictures of results and one HTML page of many runs. Results know their numbers (:mod:`genrobust.results`);
everything drawn from them lives here, one module per kind of result."""

from .correctness import save_confidence_profile, save_outliers
from .grid import image_grid, save_grid
from .rare import save_failures, save_levels_plot
from .robustness import save_robustness_curve

__all__ = [
    "image_grid",
    "save_confidence_profile",
    "save_failures",
    "save_grid",
    "save_levels_plot",
    "save_outliers",
    "save_robustness_curve",
]
