"""Person re-identification in JAX/Flax (README.md).

The public API, for notebooks and scripts (README, "Python API"):

* `jreid.train(config, workdir)` runs `config.protocol` (a single run, the
  lifelong sequence, domain generalisation) as `python -m jreid.main` does
  and returns its results;
* `jreid.load(workdir)` opens a finished run: `.config`, `.state`,
  `.features(pixels)` and `.evaluate(dataset)` (`jreid.api.Run`).

Both import JAX on first use, so `import jreid` stays fast. Importing jreid
turns on JAX's persistent compilation cache, so every entry point
(`jreid.main`, the tools, the benchmarks, a notebook) compiles a program once
per machine; `JREID_COMPILE_CACHE=off` or `=DIR` changes that
(`jreid.compile_cache`).
"""
from jreid import compile_cache as _compile_cache

_compile_cache.enable()


def load(workdir):
  """The finished run in `workdir` (a `jreid.api.Run`); see `jreid.api.load`."""
  from jreid import api
  return api.load(workdir)


def __getattr__(name):
  # `jreid.train` is the package jreid/train/, callable as `jreid.train(config, workdir)`
  # (see its docstring): the public name and the package's coincide. Imported on first
  # use, as any submodule would be, so that `import jreid` does not import it.
  if name == "train":
    import importlib
    return importlib.import_module("jreid.train")
  raise AttributeError(f"module 'jreid' has no attribute {name!r}")
