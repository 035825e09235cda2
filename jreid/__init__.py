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
import types as _types

from jreid import compile_cache as _compile_cache
from jreid import train as _train_package  # the package only (its __init__ imports nothing)

_compile_cache.enable()


def load(workdir):
  """The finished run in `workdir` (a `jreid.api.Run`); see `jreid.api.load`."""
  from jreid import api
  return api.load(workdir)


class _CallablePackage(_types.ModuleType):
  """`jreid.train` is the package jreid/train/ and the public `jreid.train(config, workdir)`.

  A function named `train` here would be replaced by the package the moment
  anything imports `jreid.train.loop` (the import system sets a package as its
  parent's attribute), so the package itself is made callable, once, here.
  """

  def __call__(self, config, workdir) -> dict:
    from jreid import api  # imports JAX: only when called
    return api.train(config, workdir)


_train_package.__class__ = _CallablePackage
