"""A state initialised through run_once.jit (backend -O1 on a CPU) is the default compile's, bit for bit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from benchmarks.common import load_config
from jreid import methods
from jreid.core import run_once
from jreid.train import update


def test_a_cpu_compiles_at_o1_and_other_backends_keep_their_defaults(monkeypatch):
  assert run_once.compiler_options() == {"xla_backend_optimization_level": 1}  # tests run on the CPU
  monkeypatch.setattr(run_once.jax, "default_backend", lambda: "gpu")
  assert run_once.compiler_options() == {}


@pytest.mark.parametrize("spec", ["configs/baseline.py:smoke", "configs/vit.py:smoke"])
def test_initial_state_is_bit_identical_to_the_default_compile(spec):
  config = load_config(spec)
  method = methods.build(config, 7, update.factory(config, 10))
  sample = jnp.zeros((1, config.data.height, config.data.width, 3))
  default = jax.device_get(jax.jit(method.init)(jax.random.key(3), sample))
  once = jax.device_get(run_once.jit(method.init)(jax.random.key(3), sample))
  assert jax.tree.structure(default) == jax.tree.structure(once)
  for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(once)):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
