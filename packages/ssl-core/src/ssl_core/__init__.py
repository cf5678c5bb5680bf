"""The SSL Module (user forward bound to a LightningModule), optimizers, schedules, backbones, TeacherStudentWrapper."""

__version__ = "0.1.0"
