"""The SSL Module and its companions.

A user forward bound to a LightningModule, optimizers and schedules, backbones and the
TeacherStudentWrapper.
"""

from ssl_core import backbone, optim
from ssl_core.errors import NonFiniteLossError
from ssl_core.module import Module
from ssl_core.queues import QueueProvider, find_queue
from ssl_core.teacher_student import TeacherStudentWrapper, ema_coefficient

__version__ = "0.1.0"

__all__ = [
    "Module",
    "NonFiniteLossError",
    "QueueProvider",
    "TeacherStudentWrapper",
    "__version__",
    "backbone",
    "ema_coefficient",
    "find_queue",
    "optim",
]
