"""MoCo's key queue (FIFO with wrap-around) and the EMA parameter update."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.core import ema, queue


def _keys(*values, dim=3):
  """One key row per value, every entry of the row equal to that value."""
  return jnp.asarray(np.repeat(np.asarray(values, np.float32)[:, None], dim, axis=1))


def _column(q):
  """Row r's (constant) value, so the queue reads as a list."""
  q = np.asarray(q)
  assert (q == q[:, :1]).all()
  return q[:, 0].tolist()


def test_enqueue_fifo_order_with_wrap_around():
  q = jnp.zeros((5, 3), jnp.float32)
  pointer = jnp.int32(0)
  # (batch values, expected queue column after the write, expected next pointer)
  steps = [((1, 2), [1, 2, 0, 0, 0], 2),
           ((3, 4), [1, 2, 3, 4, 0], 4),
           ((5, 6), [6, 2, 3, 4, 5], 1),     # row 4, then wraps to row 0
           ((7, 8), [6, 7, 8, 4, 5], 3),
           ((9, 10), [6, 7, 8, 9, 10], 0),   # ends exactly at the end: pointer back to 0
           ((11, 12), [11, 12, 8, 9, 10], 2)]
  for values, expected, next_pointer in steps:
    q, pointer = queue.enqueue(q, pointer, _keys(*values))
    assert _column(q) == expected
    assert int(pointer) == next_pointer


def test_enqueue_keeps_last_size_keys_like_a_deque():
  """Many steps against collections.deque(maxlen=size), read in ring order from the pointer."""
  import collections
  size, batch, dim = 7, 3, 2
  rng = np.random.default_rng(0)
  q, pointer = jnp.zeros((size, dim), jnp.float32), jnp.int32(0)
  reference = collections.deque([np.zeros(dim, np.float32)] * size, maxlen=size)
  for _ in range(6):
    keys = rng.normal(size=(batch, dim)).astype(np.float32)
    q, pointer = queue.enqueue(q, pointer, jnp.asarray(keys))
    reference.extend(keys)
    # Oldest entry sits at the pointer; reading size rows from there gives FIFO order.
    ring = np.asarray(q)[(int(pointer) + np.arange(size)) % size]
    np.testing.assert_array_equal(ring, np.stack(reference))


def test_batch_equal_to_size_replaces_everything():
  q = _keys(1, 2, 3, 4)
  new, pointer = queue.enqueue(q, jnp.int32(0), _keys(5, 6, 7, 8))
  assert _column(new) == [5, 6, 7, 8] and int(pointer) == 0
  # From a non-zero pointer the whole queue is still rewritten, starting at the pointer.
  new, pointer = queue.enqueue(q, jnp.int32(3), _keys(5, 6, 7, 8))
  assert _column(new) == [6, 7, 8, 5] and int(pointer) == 3


def test_batch_larger_than_queue_is_rejected():
  with pytest.raises(ValueError, match="does not fit"):
    queue.enqueue(jnp.zeros((4, 3)), jnp.int32(0), jnp.zeros((5, 3)))


def test_enqueue_under_jit_and_casts_to_queue_dtype():
  step = jax.jit(queue.enqueue)
  q = jnp.zeros((5, 3), jnp.float32)
  pointer = jnp.int32(4)
  q, pointer = step(q, pointer, _keys(1, 2).astype(jnp.bfloat16))  # rows 4, then 0
  assert q.dtype == jnp.float32
  assert _column(q) == [2, 0, 0, 0, 1] and int(pointer) == 1
  q, pointer = step(q, pointer, _keys(3, 4))
  assert _column(q) == [2, 3, 4, 0, 1] and int(pointer) == 3
  with pytest.raises(ValueError):
    step(q, pointer, jnp.zeros((6, 3)))


def test_enqueue_carries_no_gradient_to_keys():
  keys = _keys(1.0, 2.0)
  grad = jax.grad(lambda k: jnp.sum(queue.enqueue(jnp.zeros((4, 3)), jnp.int32(1), k)[0] ** 2))(keys)
  np.testing.assert_array_equal(np.asarray(grad), 0.0)


def test_init_unit_rows_and_deterministic():
  a = queue.init(jax.random.key(0), 16, 8)
  assert a.shape == (16, 8) and a.dtype == jnp.float32
  np.testing.assert_allclose(np.linalg.norm(np.asarray(a, np.float64), axis=1), 1.0, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(a), np.asarray(queue.init(jax.random.key(0), 16, 8)))
  b = queue.init(jax.random.key(1), 16, 8)
  assert not np.allclose(np.asarray(a), np.asarray(b))
  # Rows are distinct directions, not one repeated vector.
  cosines = np.asarray(a) @ np.asarray(a).T
  assert np.abs(cosines[~np.eye(16, dtype=bool)]).max() < 0.999


def _tree(rng):
  return {"dense": {"kernel": rng.normal(size=(3, 2)).astype(np.float32),
                    "bias": rng.normal(size=(2,)).astype(np.float32)},
          "norm": [rng.normal(size=(4,)).astype(np.float32), np.float32(rng.normal())]}


def test_ema_matches_numpy_on_nested_tree():
  rng = np.random.default_rng(0)
  average, online = _tree(rng), _tree(rng)
  for momentum in (0.9, 0.999, 0.5):
    out = ema.update(jax.tree.map(jnp.asarray, average), jax.tree.map(jnp.asarray, online), momentum)
    assert jax.tree.structure(out) == jax.tree.structure(average)
    leaves_out = jax.tree.leaves(out)
    leaves_avg, leaves_on = jax.tree.leaves(average), jax.tree.leaves(online)
    for got, a, o in zip(leaves_out, leaves_avg, leaves_on):
      expected = momentum * np.float64(a) + (1 - momentum) * np.float64(o)
      np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-6, atol=1e-7)


def test_ema_momentum_edge_cases():
  rng = np.random.default_rng(1)
  average, online = _tree(rng), _tree(rng)
  keep = ema.update(average, online, 1.0)
  take = ema.update(average, online, 0.0)
  for got, want in zip(jax.tree.leaves(keep), jax.tree.leaves(average)):
    np.testing.assert_array_equal(np.asarray(got), want)
  for got, want in zip(jax.tree.leaves(take), jax.tree.leaves(online)):
    np.testing.assert_array_equal(np.asarray(got), want)


def test_ema_repeated_updates_converge_geometrically():
  """n updates towards a fixed target leave momentum**n of the initial gap."""
  average, target = {"w": jnp.zeros(3)}, {"w": jnp.ones(3)}
  for _ in range(10):
    average = ema.update(average, target, 0.8)
  np.testing.assert_allclose(np.asarray(average["w"]), 1 - 0.8 ** 10, rtol=1e-5)


def test_ema_stops_gradient_to_online():
  rng = np.random.default_rng(2)
  average = jax.tree.map(jnp.asarray, _tree(rng))
  online = jax.tree.map(jnp.asarray, _tree(rng))

  def total(avg, on):
    return sum(jnp.sum(leaf ** 2) for leaf in jax.tree.leaves(ema.update(avg, on, 0.7)))

  grad_avg, grad_online = jax.grad(total, argnums=(0, 1))(average, online)
  for g in jax.tree.leaves(grad_online):
    np.testing.assert_array_equal(np.asarray(g), 0.0)
  # The average itself is differentiable: d/da sum((m a + (1-m) o)^2) = 2 m (m a + (1-m) o).
  for g, a, o in zip(jax.tree.leaves(grad_avg), jax.tree.leaves(average), jax.tree.leaves(online)):
    expected = 2 * 0.7 * (0.7 * np.float64(a) + 0.3 * np.float64(o))
    np.testing.assert_allclose(np.asarray(g), expected, rtol=1e-5, atol=1e-6)
