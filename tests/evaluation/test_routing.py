"""Routing: each test image gets the bank of its camera's domain; the unseen-camera policies."""
import jax.numpy as jnp
import numpy as np
import pytest

from jreid.core.state import TrainState
from jreid.data.records import Record
from jreid.errors import ConfigError
from jreid.evaluation import routing

STEM = 3  # channels of the fake stem


def _state():
  return TrainState(step=jnp.zeros(()), params={"shared": np.float32(0), "tag": np.float32(-1)},
                    batch_stats={"backbone": {"bn1": {"mean": np.zeros(STEM), "var": np.ones(STEM)}}},
                    opt_state=())


def _bank(tag, mean):
  return {"params": {"tag": np.float32(tag)},
          "batch_stats": {"backbone": {"bn1": {"mean": np.full(STEM, mean), "var": np.ones(STEM)}}}}


def features_fn(state, images):
  raise AssertionError("the fake extract never calls it")


def stats_fn(state, images):
  raise AssertionError("the fake extract never calls it")


def stem_statistics(state):
  """The method's hook: the stem norm's running statistics (here the fake tree's bn1)."""
  stem = state.batch_stats["backbone"]["bn1"]
  return stem["mean"], stem["var"]


def make_router(policy):
  seen = []

  def extract(fn, state, records):
    seen.append((float(state.params["tag"]), [r.path for r in records]))
    if fn is stats_fn:  # the camera's images look like domain 1 (mean 5): E[x] = 5, E[x^2] = 26
      return np.tile(np.r_[np.full(STEM, 5.0), np.full(STEM, 26.0)], (len(records), 1))
    return np.stack([[float(state.params["tag"]), 1.0] for _ in records]).astype(np.float32)

  router = routing.Router(state=_state(), banks=[_bank(10, 0.0), _bank(20, 5.0), _bank(30, -4.0)],
                          camera_domains={"a/1": 0, "a/2": 0, "b/7": 1, "c/3": 2},
                          features_fn=features_fn, extract=extract, stats_fn=stats_fn,
                          stem_statistics=stem_statistics, policy=policy)
  return router, seen




def test_every_image_uses_its_camera_s_bank():
  router, seen = make_router("last")
  a = router.embed("a", [Record("x0", 1, 1), Record("x1", 2, 2), Record("x2", 3, 1)])
  assert a[:, 0].tolist() == [10, 10, 10]
  b = router.embed("b", [Record("y0", 1, 7), Record("y1", 2, 7)])
  assert b[:, 0].tolist() == [20, 20]
  # The shared part is kept, the bank replaces only its own leaves.
  assert float(router.state_for(2).params["shared"]) == 0 and float(router.state_for(2).params["tag"]) == 30


def test_unseen_cameras_follow_the_policy():
  unseen = [Record("u0", 1, 9), Record("u1", 2, 9)]
  last, _ = make_router("last")
  assert last.embed("u", unseen)[:, 0].tolist() == [30, 30]
  nearest, _ = make_router("stats")
  assert nearest.embed("u", unseen)[:, 0].tolist() == [20, 20]  # the bank with stem mean 5
  assert nearest.chosen == {"u/9": 1}
  average, _ = make_router("average")
  expected = np.mean([np.array([t, 1.0]) / np.hypot(t, 1.0) for t in (10, 20, 30)], axis=0)
  np.testing.assert_allclose(average.embed("u", unseen)[0], expected, rtol=1e-6)


def test_order_is_kept_across_cameras():
  router, _ = make_router("last")
  mixed = [Record("m0", 1, 7), Record("m1", 1, 1), Record("m2", 1, 7)]
  got = router.embed("b", mixed)
  # camera b/1 is unknown (camera keys carry the dataset): policy "last"
  assert got[:, 0].tolist() == [20, 30, 20]


def test_unknown_policy_is_an_error():
  with pytest.raises(ConfigError, match="unseen_policy"):
    make_router("nearest")


def test_stats_distance_is_zero_only_for_equal_gaussians():
  m, v = np.array([1.0, 2.0]), np.array([4.0, 9.0])
  assert routing.stats_distance(m, v, m, v) == 0
  assert routing.stats_distance(m, v, m + 1, v) == pytest.approx(1.0)
  assert routing.stats_distance(m, v, m, v * 4) == pytest.approx((4 + 9) / 2)


def test_banks_round_trip_through_files(tmp_path):
  bank = _bank(7, 2.5)
  routing.save_bank(tmp_path / "banks" / "1_d0.msgpack", bank)
  loaded = routing.load_bank(tmp_path / "banks" / "1_d0.msgpack")
  np.testing.assert_array_equal(loaded["batch_stats"]["backbone"]["bn1"]["mean"], np.full(STEM, 2.5))
  assert float(loaded["params"]["tag"]) == 7
  (tmp_path / "bad.msgpack").write_bytes(b"\x00garbage")
  with pytest.raises(Exception, match="cannot read the domain bank"):
    routing.load_bank(tmp_path / "bad.msgpack")


def test_the_stats_policy_needs_the_method_s_stem_hooks():
  with pytest.raises(ConfigError, match="stem_statistics"):
    routing.Router(state=_state(), banks=[_bank(10, 0.0)], camera_domains={}, features_fn=features_fn,
                   extract=lambda *a: None, stats_fn=stats_fn, policy="stats")
