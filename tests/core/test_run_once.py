"""A state initialised through run_once.jit (backend -O1 on a CPU) is the default compile's, bit for bit."""
import os
import pathlib
import subprocess
import sys

import pytest

from jreid.core import run_once
from tests.conftest import TEST_XLA_FLAGS

REPO = pathlib.Path(__file__).resolve().parents[2]

# In a process of its own: the test session's XLA_FLAGS set -O1 for every compile (tests/conftest.py),
# which a per-program compiler option does not undo, so "the default compile" would be -O1 as well.
BOTH_COMPILES = """
import sys
import jax, jax.numpy as jnp, numpy as np
from benchmarks.common import load_config
from jreid import methods
from jreid.core import run_once
from jreid.train import update
config = load_config(sys.argv[1])
method = methods.build(config, 7, update.factory(config, 10))
sample = jnp.zeros((1, config.data.height, config.data.width, 3))
default = jax.device_get(jax.jit(method.init)(jax.random.key(3), sample))
once = jax.device_get(run_once.jit(method.init)(jax.random.key(3), sample))
assert jax.tree.structure(default) == jax.tree.structure(once)
pairs = [(np.asarray(a), np.asarray(b)) for a, b in zip(jax.tree.leaves(default), jax.tree.leaves(once))]
differ = sum(a.dtype != b.dtype or a.tobytes() != b.tobytes() for a, b in pairs)
print(f"RESULT leaves {len(pairs)} differ {differ}")
"""


def test_a_cpu_compiles_at_o1_and_other_backends_keep_their_defaults(monkeypatch):
  assert run_once.compiler_options() == {"xla_backend_optimization_level": 1}  # tests run on the CPU
  monkeypatch.setattr(run_once.jax, "default_backend", lambda: "gpu")
  assert run_once.compiler_options() == {}


@pytest.mark.parametrize("spec", ["configs/baseline.py:smoke", "configs/vit.py:smoke"])
def test_initial_state_is_bit_identical_to_the_default_compile(spec):
  flags = os.environ.get("XLA_FLAGS", "").replace(TEST_XLA_FLAGS, "").strip()
  env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=flags, JREID_COMPILE_CACHE="off")
  result = subprocess.run([sys.executable, "-c", BOTH_COMPILES, spec], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  line = next(l for l in result.stdout.splitlines() if l.startswith("RESULT"))
  leaves, differ = int(line.split()[2]), int(line.split()[4])
  assert leaves > 10 and differ == 0, line
