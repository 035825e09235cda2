"""The shared training loop and what only it uses: durations, optimisers, the update step.

`jreid.train` is also the public `jreid.train(config, workdir)`; jreid/__init__.py
makes this package callable (the function and the package share the name).
"""
