"""JAX's persistent compilation cache, on for every jreid process: a rerun skips XLA compilation.

`import jreid` calls `enable()`, so `jreid.main`, the tools, the benchmarks
and a notebook's first `import jreid...` all share one per-user folder:

* `JREID_COMPILE_CACHE=DIR` moves it, `JREID_COMPILE_CACHE=off` turns it off;
* else JAX's own setting (`JAX_COMPILATION_CACHE_DIR`) is used if there is one;
* else `$XDG_CACHE_HOME/jreid/xla` (`~/.cache/jreid/xla`).

A cached executable is the one XLA would compile again, so a warm run's
numbers equal a cold run's to the bit (tests/train/test_compile_cache.py).
A folder that cannot be created or written is reported once and the process
compiles without a cache; a damaged entry is recompiled, with one notice
per process instead of JAX's warning per program. The folder is made
private (0700): JAX runs what it finds there.
"""
from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import warnings

ENV = "JREID_COMPILE_CACHE"
OFF = ("off", "0", "false", "no", "none")

# Programs that compile faster than this are not written. Measured on the 2-core CPU
# (`python -m benchmarks.compile_cache`): warm smoke runs at 0-0.5 s are within noise of each
# other, JAX's 1 s default was the slowest twice; 0 s caches every program (a few ms each).
# JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS, when set, wins.
MIN_COMPILE_SECS = 0.0

_CACHE_TROUBLE = ("Error reading persistent compilation cache", "Error writing persistent compilation cache")
_state = {"folder": None, "written": None, "told": False, "hooked": False}


def default_folder() -> pathlib.Path:
  base = os.environ.get("XDG_CACHE_HOME") or pathlib.Path.home() / ".cache"
  return pathlib.Path(base) / "jreid" / "xla"


def folder() -> pathlib.Path | None:
  """The cache folder this process uses, or None when the cache is off."""
  return _state["folder"]


def _tell_once(text: str) -> None:
  if not _state["told"]:
    _state["told"] = True
    print(f"jreid: {text}", file=sys.stderr, flush=True)


def _unusable(path: pathlib.Path) -> str:
  """Why `path` cannot hold the cache ('' when it can): it must exist, or be creatable, and be writable."""
  try:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with tempfile.NamedTemporaryFile(dir=path, prefix=".probe-"):
      pass
  except OSError as err:
    return f"{type(err).__name__}: {err.strerror or err}"
  return ""


def _set(name: str, value) -> None:
  """A JAX option: through jax.config once JAX is imported, else the variable it reads at import."""
  if "jax" in sys.modules:
    sys.modules["jax"].config.update(name, value)
  else:
    os.environ[name.upper()] = "" if value is None else str(value)


def _one_notice_for_damaged_entries() -> None:
  """JAX warns once per program whose entry it cannot read or write; say it once instead."""
  if _state["hooked"]:
    return
  _state["hooked"] = True
  show = warnings.showwarning

  def showwarning(message, category, filename, lineno, file=None, line=None):
    if str(message).startswith(_CACHE_TROUBLE):
      _tell_once(f"the compilation cache {_state['folder']} has entries that cannot be read or "
                 f"written ({str(message)[:160]}...); compiling those programs instead")
      return
    show(message, category, filename, lineno, file, line)

  warnings.showwarning = showwarning


def enable(directory: str | os.PathLike | None = None) -> pathlib.Path | None:
  """Turns the cache on in `directory` (default: as the module docstring says); returns the folder.

  Returns None, having turned the cache off, when the choice is `off` or the
  folder is unusable. Call it before the first compilation: JAX opens its
  cache once per process.
  """
  choice = str(directory) if directory is not None else os.environ.get(ENV, "").strip()
  if not choice:  # JAX's own setting, unless it is the one this module wrote
    jax_config = sys.modules["jax"].config if "jax" in sys.modules else None
    theirs = [jax_config.jax_compilation_cache_dir if jax_config else None,
              os.environ.get("JAX_COMPILATION_CACHE_DIR")]
    choice = next((c for c in theirs if c and c != _state["written"]), str(default_folder()))
  if choice.lower() in OFF:
    return disable()
  path = pathlib.Path(choice).expanduser().resolve()
  problem = _unusable(path)
  if problem:
    _tell_once(f"compilation cache folder {path} is not usable ({problem}); compiling without a cache "
               f"(set {ENV}=DIR to move it, or {ENV}=off)")
    return disable()
  _set("jax_enable_compilation_cache", True)
  _set("jax_compilation_cache_dir", str(path))
  _state["written"] = str(path)
  _set("jax_persistent_cache_min_compile_time_secs",
       float(os.environ.get("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", MIN_COMPILE_SECS)))
  _state["folder"] = path
  _reopen()
  _one_notice_for_damaged_entries()
  return path


def disable() -> None:
  _set("jax_enable_compilation_cache", False)
  _set("jax_compilation_cache_dir", None)
  _state["folder"] = None
  _reopen()
  return None


def _reopen() -> None:
  """JAX opens its cache at the first compilation; a later change of folder needs it reopened."""
  if "jax" in sys.modules:
    from jax.experimental.compilation_cache import compilation_cache
    compilation_cache.reset_cache()
