"""InfoNCE against a queue and multi-kernel MMD, against float64 numpy references."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.losses import contrastive


def _unit(rng, n, d):
  x = rng.normal(size=(n, d))
  return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _numpy_info_nce(query, positive, negatives, temperature):
  """Row by row: -log(e^{q.k+/t} / (e^{q.k+/t} + sum_n e^{q.n/t})), averaged."""
  q, k, n = (np.asarray(a, np.float64) for a in (query, positive, negatives))
  total = 0.0
  for i in range(len(q)):
    pos = np.exp(np.dot(q[i], k[i]) / temperature)
    neg = sum(np.exp(np.dot(q[i], n[j]) / temperature) for j in range(len(n)))
    total += -np.log(pos / (pos + neg))
  return total / len(q)


def _numpy_info_nce_grad(query, positive, negatives, temperature):
  """d loss / d query: (softmax-weighted mean of [k+, n_1..n_N] - k+) / (t B), row by row."""
  q, k, n = (np.asarray(a, np.float64) for a in (query, positive, negatives))
  grad = np.zeros_like(q)
  for i in range(len(q)):
    candidates = np.concatenate([k[i:i + 1], n])
    logits = candidates @ q[i] / temperature
    p = np.exp(logits - logits.max())
    p /= p.sum()
    grad[i] = (p @ candidates - k[i]) / (temperature * len(q))
  return grad


@pytest.mark.parametrize("temperature", [1.0, 0.2, 0.07])
def test_info_nce_matches_loop(temperature):
  rng = np.random.default_rng(0)
  query, positive, negatives = _unit(rng, 6, 8), _unit(rng, 6, 8), _unit(rng, 11, 8)
  got = contrastive.info_nce(query, positive, negatives, temperature)
  assert got.shape == ()
  np.testing.assert_allclose(float(got), _numpy_info_nce(query, positive, negatives, temperature),
                             rtol=1e-5)


def test_info_nce_hand_computed():
  # All similarities equal (query orthogonal to everything): uniform over N + 1 candidates.
  e = np.eye(6, dtype=np.float32)
  query = e[:2]                                  # rows e0, e1
  positive = e[2:4]                              # orthogonal to both queries
  negatives = e[2:6]                             # N = 4, all orthogonal to the queries
  np.testing.assert_allclose(float(contrastive.info_nce(query, positive, negatives, 0.1)),
                             np.log(5), rtol=1e-6)
  # Positive = query, every negative = -query, t = 1: -log(e / (e + N/e)) = log(1 + N e^-2).
  q = e[:1]
  loss = contrastive.info_nce(q, q, np.repeat(-q, 3, axis=0), 1.0)
  np.testing.assert_allclose(float(loss), np.log1p(3 * np.exp(-2.0)), rtol=1e-6)
  # Per-row losses are averaged over the batch, not summed: [log 5, log(1 + 4 e^-2)] / 2.
  query = np.stack([e[0], e[1]])
  positive = np.stack([e[5], e[1]])
  negatives = np.stack([-e[1], e[2], e[3], e[4]])     # -e1 only matters for row 1
  row1 = np.log(np.exp(1.0) + np.exp(-1.0) + 3.0) - 1.0
  np.testing.assert_allclose(float(contrastive.info_nce(query, positive, negatives, 1.0)),
                             (np.log(5) + row1) / 2, rtol=1e-6)


@pytest.mark.parametrize("temperature", [0.5, 0.07])
def test_info_nce_gradients(temperature):
  rng = np.random.default_rng(1)
  query, positive, negatives = _unit(rng, 4, 5), _unit(rng, 4, 5), _unit(rng, 7, 5)
  grads = jax.grad(contrastive.info_nce, argnums=(0, 1, 2))(query, positive, negatives, temperature)
  np.testing.assert_allclose(np.asarray(grads[0]),
                             _numpy_info_nce_grad(query, positive, negatives, temperature),
                             rtol=1e-4, atol=1e-6)
  np.testing.assert_array_equal(np.asarray(grads[1]), 0.0)   # EMA encoder's keys: no gradient
  np.testing.assert_array_equal(np.asarray(grads[2]), 0.0)   # queue: no gradient


def test_info_nce_query_gradient_matches_finite_differences():
  """Independent of the analytic formula: central differences of the float64 loop."""
  rng = np.random.default_rng(2)
  query, positive, negatives = _unit(rng, 3, 4), _unit(rng, 3, 4), _unit(rng, 5, 4)
  grad = np.asarray(jax.grad(contrastive.info_nce)(query, positive, negatives, 0.3))
  q64 = query.astype(np.float64)
  numeric = np.zeros_like(q64)
  eps = 1e-6
  for index in np.ndindex(q64.shape):
    up, down = q64.copy(), q64.copy()
    up[index] += eps
    down[index] -= eps
    numeric[index] = (_numpy_info_nce(up, positive, negatives, 0.3)
                      - _numpy_info_nce(down, positive, negatives, 0.3)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-4, atol=1e-6)


def _numpy_bandwidths(pooled, kernel_mul, kernel_num):
  """Middle bandwidth = mean squared distance over distinct pairs; the others in ratio kernel_mul."""
  n = len(pooled)
  distances = [np.sum((pooled[a] - pooled[b]) ** 2) for a in range(n) for b in range(n) if a != b]
  middle = np.mean(distances)
  low = -(kernel_num // 2)
  return [middle * kernel_mul ** k for k in range(low, low + kernel_num)]


def _numpy_kernel(u, v, bandwidths):
  d = np.sum((u - v) ** 2)
  return sum(np.exp(-d / s) for s in bandwidths)


def _numpy_mmd(x, y, kernel_mul=2.0, kernel_num=5):
  """Biased MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y), diagonals included."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  bandwidths = _numpy_bandwidths(np.concatenate([x, y]), kernel_mul, kernel_num)
  kxx = np.mean([[_numpy_kernel(a, b, bandwidths) for b in x] for a in x])
  kyy = np.mean([[_numpy_kernel(a, b, bandwidths) for b in y] for a in y])
  kxy = np.mean([[_numpy_kernel(a, b, bandwidths) for b in y] for a in x])
  return kxx + kyy - 2 * kxy


def test_bandwidth_set_is_centred_on_the_mean_distance():
  # Two points at squared distance 4: mean off-diagonal distance is 4, so with mul 2,
  # num 5 the bandwidths are 1, 2, 4, 8, 16 and k(x, y) = sum_s exp(-4 / s).
  x, y = np.zeros((1, 2), np.float32), np.array([[2.0, 0.0]], np.float32)
  kernels = np.asarray(contrastive.gaussian_kernels(x, y, 2.0, 5))
  expected_xy = sum(np.exp(-4.0 / s) for s in (1, 2, 4, 8, 16))
  np.testing.assert_allclose(kernels, [[5, expected_xy], [expected_xy, 5]], rtol=1e-6)
  # Even count: num 4 gives exponents -2..1, i.e. bandwidths 1, 2, 4, 8.
  kernels = np.asarray(contrastive.gaussian_kernels(x, y, 2.0, 4))
  np.testing.assert_allclose(kernels[0, 1], sum(np.exp(-4.0 / s) for s in (1, 2, 4, 8)), rtol=1e-6)
  # mul 3, num 3: bandwidths 4/3, 4, 12.
  kernels = np.asarray(contrastive.gaussian_kernels(x, y, 3.0, 3))
  np.testing.assert_allclose(kernels[0, 1], sum(np.exp(-4.0 / s) for s in (4 / 3, 4, 12)), rtol=1e-6)


def test_gaussian_kernels_match_loop():
  rng = np.random.default_rng(3)
  x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(3, 3)).astype(np.float32)
  pooled = np.concatenate([x, y]).astype(np.float64)
  bandwidths = _numpy_bandwidths(pooled, 2.0, 5)
  expected = np.array([[_numpy_kernel(a, b, bandwidths) for b in pooled] for a in pooled])
  np.testing.assert_allclose(np.asarray(contrastive.gaussian_kernels(x, y, 2.0, 5)), expected,
                             rtol=1e-5)


@pytest.mark.parametrize("kernel_mul,kernel_num", [(2.0, 5), (2.0, 4), (3.0, 3), (1.5, 1)])
@pytest.mark.parametrize("sizes", [(5, 5), (4, 6)], ids=["equal", "unequal"])
def test_mmd_matches_loop(kernel_mul, kernel_num, sizes):
  rng = np.random.default_rng(4)
  x = rng.normal(size=(sizes[0], 3)).astype(np.float32)
  y = (rng.normal(size=(sizes[1], 3)) * 1.5 + 0.7).astype(np.float32)
  got = float(contrastive.mmd(x, y, kernel_mul=kernel_mul, kernel_num=kernel_num))
  np.testing.assert_allclose(got, _numpy_mmd(x, y, kernel_mul, kernel_num), rtol=1e-5)


def test_mmd_defaults_are_mul_2_num_5():
  rng = np.random.default_rng(5)
  x, y = rng.normal(size=(4, 3)).astype(np.float32), rng.normal(size=(4, 3)).astype(np.float32) + 1
  np.testing.assert_allclose(float(contrastive.mmd(x, y)), _numpy_mmd(x, y, 2.0, 5), rtol=1e-5)


def test_mmd_zero_symmetric_and_positive():
  rng = np.random.default_rng(6)
  x = rng.normal(size=(6, 4)).astype(np.float32)
  y = rng.normal(size=(6, 4)).astype(np.float32)
  assert abs(float(contrastive.mmd(x, x))) < 1e-6
  np.testing.assert_allclose(float(contrastive.mmd(x, y)), float(contrastive.mmd(y, x)),
                             rtol=1e-5, atol=1e-7)
  # Same rows in another order: the same empirical distribution.
  assert abs(float(contrastive.mmd(x, x[::-1]))) < 1e-6
  near = float(contrastive.mmd(x, y))
  far = float(contrastive.mmd(x, y + 3.0))
  assert near > 0 and far > 0
  assert far > near


def test_mmd_gradient_holds_the_bandwidth_constant():
  """d MMD / d x equals finite differences of the loop with the bandwidths frozen at x's value."""
  rng = np.random.default_rng(7)
  x, y = rng.normal(size=(3, 2)).astype(np.float32), rng.normal(size=(3, 2)).astype(np.float32) + 0.5
  grad = np.asarray(jax.grad(contrastive.mmd)(x, y))
  x64, y64 = x.astype(np.float64), y.astype(np.float64)
  bandwidths = _numpy_bandwidths(np.concatenate([x64, y64]), 2.0, 5)

  def frozen(xs):
    kxx = np.mean([[_numpy_kernel(a, b, bandwidths) for b in xs] for a in xs])
    kyy = np.mean([[_numpy_kernel(a, b, bandwidths) for b in y64] for a in y64])
    kxy = np.mean([[_numpy_kernel(a, b, bandwidths) for b in y64] for a in xs])
    return kxx + kyy - 2 * kxy

  eps = 1e-6
  numeric = np.zeros_like(x64)
  for index in np.ndindex(x64.shape):
    up, down = x64.copy(), x64.copy()
    up[index] += eps
    down[index] -= eps
    numeric[index] = (frozen(up) - frozen(down)) / (2 * eps)
  np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-6)


def test_mmd_one_point_each_side_is_finite():
  x, y = np.zeros((1, 3), np.float32), np.ones((1, 3), np.float32)
  np.testing.assert_allclose(float(contrastive.mmd(x, y)), _numpy_mmd(x, y), rtol=1e-5)


def test_mmd_distinct_x_rows_against_constant_y():
  """One side collapsed to a point is fine while the pooled rows are not all equal."""
  rng = np.random.default_rng(8)
  x = rng.normal(size=(4, 3)).astype(np.float32)
  y = np.ones((4, 3), np.float32)
  np.testing.assert_allclose(float(contrastive.mmd(x, y)), _numpy_mmd(x, y), rtol=1e-5)


def test_mmd_all_rows_equal_is_zero_not_nan():
  # Identical distributions, so the squared MMD is 0; every kernel entry should be equal.
  x = np.ones((3, 4), np.float32)
  value = float(contrastive.mmd(x, x))
  grad = np.asarray(jax.grad(contrastive.mmd)(x, x))
  assert np.isfinite(value) and abs(value) < 1e-6
  assert np.isfinite(grad).all()
