"""Online evaluation callbacks for SSL: OnlineQueue, OnlineKNN, OnlineProbe, EMA, RankMe."""

from ssl_callbacks._keys import MissingKeyError
from ssl_callbacks.knn import OnlineKNN
from ssl_callbacks.neighbours import build_index, search, torch_knn, weighted_vote
from ssl_callbacks.probe import OnlineProbe
from ssl_callbacks.queue import OnlineQueue, QueueConsumer, QueueSpec
from ssl_callbacks.rankme import RankMe, rankme
from ssl_callbacks.teacher_student import TeacherStudentCallback, training_progress

__version__ = "0.1.0"

__all__ = [
    "MissingKeyError",
    "OnlineKNN",
    "OnlineProbe",
    "OnlineQueue",
    "QueueConsumer",
    "QueueSpec",
    "RankMe",
    "TeacherStudentCallback",
    "__version__",
    "build_index",
    "rankme",
    "search",
    "torch_knn",
    "training_progress",
    "weighted_vote",
]
