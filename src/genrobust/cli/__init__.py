"""The ``genrobust`` command, a package of command groups. Every subcommand has ``--help``; errors print one
line, not a traceback."""

from . import check, data, models, rate, report, reproduce, studies, train, vnnlib  # noqa: F401  (registers the commands on ``main``)
from .app import main

__all__ = ["main"]
