"""What a run tells its user: progress lines, metrics.jsonl, atomically written JSON files."""
from __future__ import annotations

import json
import os
import pathlib
import tempfile
import time
from typing import Callable

import numpy as np

from jreid.core import paths


def write_json_atomic(path: str | pathlib.Path, payload) -> None:
  """Write to a temporary file in the same folder, then rename: readers never see half a file."""
  path = pathlib.Path(path)
  text = json.dumps(payload, indent=2, sort_keys=True, default=_to_builtin) + "\n"
  with paths.writing(path, "the file"):
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
      with os.fdopen(handle, "w") as stream:
        stream.write(text)
        stream.flush()
        os.fsync(stream.fileno())
      os.chmod(temporary, 0o666 & ~_umask())  # mkstemp makes 0600; results are for everyone to read
      os.replace(temporary, path)
    except BaseException:
      pathlib.Path(temporary).unlink(missing_ok=True)
      raise


def _umask() -> int:
  current = os.umask(0)
  os.umask(current)
  return current


def _to_builtin(value):
  if isinstance(value, (np.floating, np.integer)):
    return value.item()
  if isinstance(value, np.ndarray):
    return value.tolist()
  raise TypeError(f"not JSON serialisable: {type(value)}")


class JsonLines:
  """Append-only JSON-lines log that a resumed run rewinds to its checkpoint step."""

  def __init__(self, path: str | pathlib.Path):
    self.path = pathlib.Path(path)

  def rewind(self, last_step: int) -> None:
    """Drops entries after `last_step` (they were written after the checkpoint we resume from)."""
    if not self.path.exists():
      return
    kept = [line for line in self.path.read_text().splitlines() if _step_of(line) <= last_step]
    temporary = self.path.with_suffix(".rewind")
    with paths.writing(self.path, "the log"):
      try:
        temporary.write_text("".join(line + "\n" for line in kept))
        os.replace(temporary, self.path)
      finally:
        temporary.unlink(missing_ok=True)

  def append(self, entry: dict) -> None:
    with paths.writing(self.path, "the log", "the lines before this one are intact"):
      with self.path.open("a") as stream:
        stream.write(json.dumps(entry, default=_to_builtin) + "\n")

  def read(self) -> list[dict]:
    if not self.path.exists():
      return []
    return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def _step_of(line: str) -> float:
  """A log line's step; a line a killed run cut short (or any unreadable one) sorts last, so a
  rewind drops it."""
  try:
    return json.loads(line)["step"]
  except (ValueError, KeyError, TypeError):
    return float("inf")


def once(action: Callable[[], object]) -> Callable[[], None]:
  """`action`, run by the first call only (a protocol's config.json, written when its first run starts)."""
  done = []

  def call() -> None:
    if not done:
      done.append(True)
      action()
  return call


def format_duration(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  hours, rest = divmod(seconds, 3600)
  minutes, seconds = divmod(rest, 60)
  return f"{hours}h{minutes:02d}m{seconds:02d}s" if hours else f"{minutes}m{seconds:02d}s"


class Progress:
  """One console line per logged step: step, loss parts, learning rate, images/s, ETA."""

  def __init__(self, total_steps: int, start_step: int, batch_size: int):
    self.total_steps = total_steps
    self.batch_size = batch_size
    self.mark_step = start_step
    self.mark_time = time.perf_counter()

  def throughput(self, step: int) -> float:
    """Images/s since the previous call (first interval includes compilation)."""
    now = time.perf_counter()
    rate = (step - self.mark_step) * self.batch_size / max(now - self.mark_time, 1e-9)
    self.mark_step, self.mark_time = step, now
    return rate

  def line(self, step: int, measurements: dict, images_per_second: float) -> str:
    eta = (self.total_steps - step) * self.batch_size / max(images_per_second, 1e-9)
    parts = " ".join(f"{k} {v:.4g}" for k, v in measurements.items() if k != "step")
    return (f"step {step}/{self.total_steps} | {parts} | {images_per_second:.1f} img/s | "
            f"ETA {format_duration(eta)}")
