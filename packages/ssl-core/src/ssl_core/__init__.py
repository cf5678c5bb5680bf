"""The SSL Module and its companions.

A user forward bound to a LightningModule, optimizers and schedules, backbones and the
TeacherStudentWrapper.
"""

__version__ = "0.1.0"
