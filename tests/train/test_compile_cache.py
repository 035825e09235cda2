"""The persistent compilation cache: a warm run equals a cold one, a damaged cache never fails a run.

Each run is `python -m jreid.main --config=configs/baseline.py:smoke` in its
own process (JAX reads its cache only across processes), with its own cache
folder given by JREID_COMPILE_CACHE; an unusable folder is found at `import
jreid`, so that test runs one small program instead.
"""
import json
import os
import pathlib
import subprocess
import sys

import jax
import numpy as np
import pytest

from jreid import compile_cache
from jreid.core import checkpoint

pytestmark = pytest.mark.slow
REPO = pathlib.Path(__file__).resolve().parents[2]
NOTICE = "jreid: "


def smoke_run(workdir, data_root, cache) -> subprocess.CompletedProcess:
  env = dict(os.environ, JREID_COMPILE_CACHE=str(cache), JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-m", "jreid.main", "--config=configs/baseline.py:smoke",
                           f"--workdir={workdir}", f"--config.data.root={data_root}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
  assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
  return result


def entries(cache: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(cache)): p.read_bytes() for p in sorted(cache.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def cold_then_warm(tmp_path_factory, synth_root):
  root = tmp_path_factory.mktemp("compile_cache")
  cache = root / "xla"
  smoke_run(root / "cold", synth_root, cache)
  after_cold = entries(cache)
  warm = smoke_run(root / "warm", synth_root, cache)
  return root, cache, (after_cold, entries(cache)), warm


def final_arrays(workdir):
  ckpt, step = checkpoint.open_existing(workdir)
  raw = ckpt.restore_raw(step)
  ckpt.close()
  return step, jax.tree_util.tree_flatten_with_path(raw)[0]


def test_warm_run_reads_the_cache_and_gives_identical_outputs(cold_then_warm):
  root, _, (after_cold, after_warm), warm = cold_then_warm
  assert len(after_cold) >= 5  # the train step, features, distances, ... were written
  assert after_warm == after_cold  # the warm run compiled nothing new: every program was read
  cold, hot = root / "cold", root / "warm"
  assert (cold / "results.json").read_bytes() == (hot / "results.json").read_bytes()
  assert (cold / "evals.jsonl").read_bytes() == (hot / "evals.jsonl").read_bytes()
  without_speed = lambda path: [{k: v for k, v in json.loads(line).items() if k != "img_per_s"}
                                for line in path.read_text().splitlines()]
  assert without_speed(cold / "metrics.jsonl") == without_speed(hot / "metrics.jsonl")
  (cold_step, cold_leaves), (warm_step, warm_leaves) = final_arrays(cold), final_arrays(hot)
  assert cold_step == warm_step == 4
  assert [path for path, _ in cold_leaves] == [path for path, _ in warm_leaves]
  for (path, a), (_, b) in zip(cold_leaves, warm_leaves):
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), jax.tree_util.keystr(path)
  assert NOTICE not in warm.stderr


def test_damaged_entries_are_recompiled_with_one_notice(cold_then_warm, synth_root, tmp_path):
  """In place: JAX's keys depend on the folder (its GPU autotune cache lives there), so a copy would miss."""
  root, cache, _, _ = cold_then_warm
  files = [p for p in cache.rglob("*") if p.is_file()]
  for index, path in enumerate(files):
    path.write_bytes(b"not an executable" * (index + 1))
  result = smoke_run(tmp_path / "run", synth_root, cache)
  assert result.stderr.count(NOTICE) == 1, result.stderr[-3000:]
  assert "cannot be read or written" in result.stderr
  assert (tmp_path / "run" / "results.json").read_bytes() == (root / "cold" / "results.json").read_bytes()


def make_read_only(folder: pathlib.Path, request) -> None:
  """chmod 0555; root ignores mode bits, so as root the folder is also made immutable (chattr +i)."""
  folder.chmod(0o555)
  request.addfinalizer(lambda: folder.chmod(0o755))
  if os.geteuid() == 0:
    subprocess.run(["chattr", "+i", str(folder)], check=True)
    request.addfinalizer(lambda: subprocess.run(["chattr", "-i", str(folder)], check=False))
  with pytest.raises(OSError):
    (folder / "probe").write_bytes(b"")


# What jreid.main does first (`import jreid` enables the cache), then a compile: a few seconds, not a run.
IMPORT_THEN_COMPILE = "import jreid, jax; print('RESULT', float(jax.jit(lambda x: x * 2 + 1)(3.0)))"


def test_read_only_folder_compiles_without_a_cache(tmp_path, request):
  folder = tmp_path / "xla"
  folder.mkdir()
  (folder / "an_entry-cache").write_bytes(b"left by an earlier run")
  make_read_only(folder, request)
  before = entries(folder)
  env = dict(os.environ, JREID_COMPILE_CACHE=str(folder), JAX_PLATFORMS="cpu")
  result = subprocess.run([sys.executable, "-c", IMPORT_THEN_COMPILE], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-3000:]
  assert "RESULT 7.0" in result.stdout
  assert result.stderr.count(NOTICE) == 1, result.stderr[-3000:]
  assert f"compilation cache folder {folder} is not usable" in result.stderr
  assert entries(folder) == before


def test_a_folder_that_cannot_be_made_turns_the_cache_off_with_one_notice(tmp_path, capsys):
  previous = compile_cache.folder()
  (tmp_path / "a_file").write_text("")
  compile_cache._state["told"] = False
  try:
    for _ in range(2):
      assert compile_cache.enable(tmp_path / "a_file" / "xla") is None
    assert jax.config.jax_enable_compilation_cache is False
    assert float(jax.jit(lambda x: x * 2)(3.0)) == 6.0  # compiles without a cache
    assert capsys.readouterr().err.count(NOTICE) == 1
  finally:
    compile_cache.enable(previous)


def test_folder_choice(monkeypatch, tmp_path):
  """JREID_COMPILE_CACHE, then JAX's own folder, then ~/.cache/jreid/xla; `off` turns it off."""
  previous = compile_cache.folder()
  try:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv(compile_cache.ENV, "off")
    assert compile_cache.enable() is None
    assert compile_cache.folder() is None and jax.config.jax_enable_compilation_cache is False
    monkeypatch.delenv(compile_cache.ENV)
    assert compile_cache.enable() == (tmp_path / "xdg" / "jreid" / "xla").resolve()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "xdg" / "jreid" / "xla")
    assert oct((tmp_path / "xdg" / "jreid" / "xla").stat().st_mode & 0o777) == oct(0o700)
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "jax_own"))
    assert compile_cache.enable() == tmp_path / "jax_own"
    monkeypatch.setenv(compile_cache.ENV, str(tmp_path / "mine"))
    assert compile_cache.enable() == tmp_path / "mine"
    assert jax.config.jax_enable_compilation_cache is True
  finally:
    compile_cache.enable(previous)
