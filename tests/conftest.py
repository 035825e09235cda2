"""Shared fixtures: small on-disk datasets written the way the real ones are.

The whole session, subprocesses included, shares one fresh persistent
compilation cache (set before jreid is first imported): a program compiled
by one test's run is read back by the next, in every xdist worker.
`JREID_TEST_COMPILE_CACHE=DIR` keeps it across sessions instead. It compiles
at XLA's backend -O1 (`TEST_XLA_FLAGS`); `cpu_env` keeps that in a subprocess.
"""
import atexit
import json
import os
import pathlib
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pytest
from PIL import Image

if not os.environ.get("JREID_TEST_COMPILE_CACHE"):  # the first pytest process (xdist workers inherit it)
  os.environ["JREID_TEST_COMPILE_CACHE"] = tempfile.mkdtemp(prefix="jreid-test-xla-")
  atexit.register(shutil.rmtree, os.environ["JREID_TEST_COMPILE_CACHE"], True)
os.environ["JREID_COMPILE_CACHE"] = os.environ["JREID_TEST_COMPILE_CACHE"]

# The session compiles at XLA's backend -O1: on this 2-core CPU a step's compile at the default
# -O2 costs ~25% more for the same mathematics (its last bits differ). No test compares with
# numbers recorded at -O2; `python -m benchmarks.smoke_results --compare=...` checks those.
TEST_XLA_FLAGS = "--xla_backend_optimization_level=1"
if TEST_XLA_FLAGS not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} {TEST_XLA_FLAGS}".strip()


def cpu_env(devices: int) -> dict:
  """The environment of a subprocess on `devices` simulated CPU devices, with the session's flags."""
  return dict(os.environ, JAX_PLATFORMS="cpu",
              XLA_FLAGS=f"{os.environ['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}")


def assert_finished_run(workdir: pathlib.Path) -> dict:
  """A run folder as a finished run leaves it: finite logged losses, every test set scored.

  Returns its results. What tests/configs checks of each smoke preset, and the
  tests that train a preset themselves check of theirs (TRAINED_ELSEWHERE).
  """
  workdir = pathlib.Path(workdir)
  entries = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
  assert entries and all(np.isfinite(e["loss"]) for e in entries), entries[-3:]
  results = json.loads((workdir / "results.json").read_text())
  config = json.loads((workdir / "config.json").read_text())
  assert sorted(results) == sorted(config["data"]["test"].split(","))
  assert all(0 <= numbers["mAP"] <= 100 for numbers in results.values()), results
  return results


def write_market_tree(root: pathlib.Path, *, train_ids=8, test_ids=6, per_id=4, cameras=3,
                      size=(32, 16), seed=0) -> pathlib.Path:
  """A Market-1501-layout folder of random-coloured images, with distractors and junk."""
  rng = np.random.default_rng(seed)
  folder = root / "Market-1501-v15.09.15"

  def save(sub, pid, cam, frame):
    path = folder / sub / f"{pid:04d}_c{cam}s1_{frame:06d}_01.jpg" if pid >= 0 else \
        folder / sub / f"-1_c{cam}s1_{frame:06d}_01.jpg"
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = rng.integers(0, 255, 3)
    pixels = np.clip(colour + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8)
    Image.fromarray(pixels).save(path)

  for pid in range(1, train_ids + 1):
    for k in range(per_id):
      save("bounding_box_train", pid, k % cameras + 1, k)
  for pid in range(100, 100 + test_ids):
    save("query", pid, 1, 0)
    for k in range(per_id):
      save("bounding_box_test", pid, k % cameras + 1, k + 1)
  save("bounding_box_test", 0, 2, 99)   # distractor
  save("bounding_box_test", -1, 3, 98)  # junk
  save("bounding_box_train", -1, 1, 97)  # junk in train is ignored too
  return folder


def bomb_png(width: int, height: int) -> bytes:
  """A 60-byte PNG whose header claims `width` x `height` pixels (a decompression-bomb header).

  Its image data is missing, so only the header check stands between it and a
  `width * height * 3`-byte allocation.
  """
  def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
  header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8-bit RGB
  return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


@pytest.fixture
def market_root(tmp_path) -> pathlib.Path:
  write_market_tree(tmp_path)
  return tmp_path


class FakeTree:
  """Writes a dataset's on-disk layout under a root: tiny images and list files.

  Readers only look at names and list files, so the images are 2x2 pixels;
  they are still real, decodable files in the format the name says.
  """

  def __init__(self, root: pathlib.Path):
    self.root = root

  def images(self, folder: str, names) -> list[pathlib.Path]:
    paths = []
    for name in names:
      path = self.root / folder / name
      path.parent.mkdir(parents=True, exist_ok=True)
      Image.new("RGB", (2, 2), (len(paths) * 7 % 255, 90, 160)).save(path)
      paths.append(path)
    return paths

  def text(self, path: str, lines) -> pathlib.Path:
    target = self.root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text("".join(f"{line}\n" for line in lines))
    return target


@pytest.fixture
def fake_tree(tmp_path) -> FakeTree:
  return FakeTree(tmp_path)


@pytest.fixture(scope="session")
def synth_root(tmp_path_factory) -> pathlib.Path:
  """One data root for the session: a SynthPerson preset is generated there by its first user."""
  return tmp_path_factory.mktemp("synth_data")


SMOKE_EXTRAS = ("--config.eval.visualize=True", "--config.eval.rerank=True", "--config.eval.roc=True",
                "--config.eval.dsr=True")


@pytest.fixture(scope="session")
def smoke_run(synth_root, tmp_path_factory) -> pathlib.Path:
  """`configs/baseline.py:smoke` with every evaluation extra, run once per session as a user runs it.

  Read-only for its users: a test that needs to change a trained workdir copies it.
  """
  workdir = tmp_path_factory.mktemp("smoke") / "run"
  result = subprocess.run(
      [sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke", f"--workdir={workdir}",
       f"--config.data.root={synth_root}", *SMOKE_EXTRAS],
      cwd=pathlib.Path(__file__).resolve().parents[1], env=dict(os.environ, JAX_PLATFORMS="cpu"),
      capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
  return workdir


def random_vit_variables(name, size=(64, 32), seed=0, **options):
  """(model, random variables) of a tiny `name` ViT ReID model at image `size`; BN variances > 0."""
  import jax
  import jax.numpy as jnp

  from jreid.models.reid import build_model, model_config
  config = model_config("reid", name)
  config.backbone.update({"embed_dim": 16, "depth": 2, "num_heads": 2, **options})
  if name.startswith("clip"):
    config.backbone.proj_dim = 8
  model = build_model(config, 5)
  shapes = jax.eval_shape(lambda: model.init(jax.random.key(0), jnp.zeros((1, *size, 3)), train=False))
  rng = np.random.default_rng(seed)
  return model, jax.tree.map(lambda s: rng.uniform(0.1, 1.0, s.shape).astype(np.float32),
                             {"params": shapes["params"], "batch_stats": shapes["batch_stats"]})


@pytest.fixture
def vit_variables():
  return random_vit_variables



def random_flax_params(shapes, seed=0, spread=0.1):
  """Seeded random values for a Flax param tree of ShapeDtypeStructs (a diffusers UNet / VAE):
  kernels N(0, 1/fan_in), norm scales 1 + N(0, spread^2), the rest N(0, spread^2), so that no
  zero or one init hides a mapping error. Cheap: a real eager init of even a tiny UNet is slow."""
  import jax
  rng = np.random.default_rng(seed)

  def fill(path, leaf):
    name = path[-1].key
    if name == "kernel":
      fan_in = int(np.prod(leaf.shape[:-1]))
      return (rng.normal(size=leaf.shape) / np.sqrt(fan_in)).astype(np.float32)
    if name == "scale":
      return (1 + spread * rng.normal(size=leaf.shape)).astype(np.float32)
    return (spread * rng.normal(size=leaf.shape)).astype(np.float32)

  return jax.tree_util.tree_map_with_path(fill, shapes)
