"""Pictures of results: image grids (PNG), and later plots, GIFs and HTML reports."""

from .grid import image_grid, save_grid

__all__ = ["image_grid", "save_grid"]
