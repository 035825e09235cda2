"""Programs that run once (a training state's initialisation) compile at XLA's backend -O1 on a CPU.

Initialising a model is thousands of unrolled threefry rounds and no
convolution: at the default -O2 its compile costs 2-3x the -O1 one for the
same bits (2-core CPU, smoke presets: baseline 7.9 s vs 2.5 s, SBS ResNet-50
14.0 vs 8.0, ldm_synth 15.7 vs 8.6; tests/core/test_run_once.py checks the
bits). Steps keep -O2: -O1 changes a training step's last bits. Other
backends keep their defaults (not measured there).
"""
from __future__ import annotations

import jax

CPU_OPTIONS = {"xla_backend_optimization_level": 1}


def compiler_options() -> dict:
  return dict(CPU_OPTIONS) if jax.default_backend() == "cpu" else {}


def jit(fn, **jit_kwargs):
  """`jax.jit(fn, **jit_kwargs)` for a function called once per process, e.g. `method.init`."""
  return jax.jit(fn, compiler_options=compiler_options(), **jit_kwargs)
