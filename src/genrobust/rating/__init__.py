"""The paper's manual-score study as a web page: a study folder, a rating server, and the summary of ratings."""

from .results import RatingSummary, fleiss_kappa, summarise
from .server import RatingApp, make_rating_server
from .study import CATEGORIES, Study, StudyError, create_study, open_study

__all__ = [
    "CATEGORIES",
    "RatingApp",
    "RatingSummary",
    "Study",
    "StudyError",
    "create_study",
    "fleiss_kappa",
    "make_rating_server",
    "open_study",
    "summarise",
]
