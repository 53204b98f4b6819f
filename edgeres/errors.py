"""Errors a user can act on. Each message is one line and names the fix."""


class EdgeresError(Exception):
    """Base class: the CLI prints the message and exits non-zero, without a traceback."""


class ConfigError(EdgeresError):
    """A bad option, target or configuration value."""


class DataError(EdgeresError):
    """A data set, calibration set or image that cannot be used."""


class ArtifactError(EdgeresError):
    """A checkpoint, ONNX model or report that is missing, truncated or of the wrong kind."""


class BackendUnavailable(EdgeresError):
    """A runtime (TensorRT, CUDA) that this machine does not have."""


class AccuracyBudgetExceeded(EdgeresError):
    """A precision lost more accuracy than the budget allows."""


class RemoteError(EdgeresError):
    """An SSH connection, host key or remote command that failed."""
