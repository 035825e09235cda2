"""The shared training loop and its parts (loop, checkpoints, optimisers, sharding, reporting).

The package is also the public `jreid.train(config, workdir)`: it runs
`config.protocol` and returns the results (`jreid.api.train`). A function of
that name in jreid/__init__.py would be replaced by this package the moment
anything imports `jreid.train.loop` (the import system sets the package as
the parent's attribute), so the package itself is made callable.
"""
import sys
import types


class _CallablePackage(types.ModuleType):

  def __call__(self, config, workdir):
    from jreid import api  # the layer above the loop; imported only when called
    return api.train(config, workdir)


sys.modules[__name__].__class__ = _CallablePackage
