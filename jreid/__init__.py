"""Person re-identification in JAX/Flax (README.md).

Importing jreid turns on JAX's persistent compilation cache, so every entry
point (`jreid.main`, the tools, the benchmarks, a notebook) compiles a
program once per machine; `JREID_COMPILE_CACHE=off` or `=DIR` changes that
(`jreid.compile_cache`).
"""
from jreid import compile_cache as _compile_cache

_compile_cache.enable()
