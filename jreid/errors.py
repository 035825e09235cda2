"""Errors a user can act on. `jreid.main` prints them as one line instead of a traceback."""


class ReIDError(Exception):
  """Base class: bad input or a state the user must fix (the message says how)."""


class ConfigError(ReIDError, ValueError):
  """An unknown config key or an invalid value."""


class DatasetLayoutError(ReIDError, FileNotFoundError):
  """A dataset folder or file is missing or misnamed; the message shows the expected layout."""


class ImageReadError(ReIDError, OSError):
  """An image file exists in the index but cannot be decoded."""


class CheckpointMismatchError(ReIDError, ValueError):
  """A checkpoint was written by a different model (names or shapes differ)."""


class CheckpointDamagedError(ReIDError, OSError):
  """A checkpoint step folder is incomplete, or its files differ from the digest written with them."""


class RunNotFoundError(ReIDError, FileNotFoundError):
  """A run folder is missing, or lacks its config.json or checkpoints (`jreid.load`)."""


class NonFiniteLossError(ReIDError, FloatingPointError):
  """Training produced NaN/Inf; the last good checkpoint is kept."""


class WeightsFileError(ReIDError, OSError):
  """A weights file (PyTorch .pth, .safetensors) is missing, unreadable, holds no tensors, or holds
  a tensor that cannot be a model's value (not float, NaN/inf, a negative BN variance)."""


class ClusteringError(ReIDError, ValueError):
  """Pseudo-labelling found nothing to train on (every image an outlier); the message names the settings."""


class EvaluationError(ReIDError, ValueError):
  """A test set cannot be scored: no query has a valid match, or the features are not finite."""


class OutputPathError(ReIDError, OSError):
  """An output folder or file cannot be written (a file in the way, permissions, read-only, disk full)."""
