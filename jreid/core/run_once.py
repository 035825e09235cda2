"""Programs that run once (a training state's initialisation) compile at XLA's backend -O1 on a CPU.

Initialising a model is thousands of unrolled threefry rounds and no
convolution: at the default -O2 its compile costs 1.5-4x the -O1 one for the
same bits (`python -m benchmarks.init_compile`, 2-core CPU, smoke presets:
baseline 6.5 s vs 1.7 s, SBS ResNet-50 10.4 vs 5.8, ldm_synth 15.5 vs 9.2,
all 13 bit-identical; tests/core/test_run_once.py checks the bits). Steps keep
-O2: -O1 changes a training step's last bits. Other backends keep their
defaults (not measured there).
"""
from __future__ import annotations

import jax

CPU_OPTIONS = {"xla_backend_optimization_level": 1}


def compiler_options() -> dict:
  return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fn, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` for a function called once per process, e.g. `method.init`."""
  return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)
