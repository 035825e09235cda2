"""SynthPerson: determinism, Market layout, protocol guarantees, domains, pool and caching."""
from __future__ import annotations

import collections
import json
import pathlib

import numpy as np
import pytest
from PIL import Image

from jreid.data import synth
from jreid.data.datasets import market1501
from jreid.data.synth import camera, plan, writer


def _files(root: pathlib.Path) -> dict[str, bytes]:
  return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
  out = tmp_path_factory.mktemp("tiny") / "set"
  return out, synth.generate("tiny", 0, out)


@pytest.fixture(scope="module")
def multi(tmp_path_factory):
  out = tmp_path_factory.mktemp("multi") / "set"
  return out, synth.generate("tiny_multi", 0, out)


def test_same_seed_same_bytes_other_seed_differs(tiny, tmp_path):
  root, _ = tiny
  again = tmp_path / "again"
  synth.generate("tiny", 0, again)
  first, second = _files(root), _files(again)
  assert list(first) == list(second)
  assert first == second
  synth.generate("tiny", 1, tmp_path / "seed1")
  other = _files(tmp_path / "seed1")
  shared = set(first) & set(other) - {"manifest.json"}
  assert set(first) != set(other) or any(first[k] != other[k] for k in shared)


def test_an_image_does_not_depend_on_generation_order(tiny):
  root, _ = tiny
  domain = plan.make_domain(synth.get_preset("tiny").domains[0], 0, 0, 0, 0)
  shots = plan.plan(domain)
  camera.backdrop.cache_clear()
  for shot in (shots[-1], shots[len(shots) // 2]):  # drawn alone, out of order, cold cache
    on_disk = root / "d0" / writer.SUBDIRS[shot.split] / shot.file_name(domain)
    assert writer.encode_jpeg(plan.draw(domain, shot)) == on_disk.read_bytes()


def test_market_layout_matches_manifest(tiny):
  root, manifest = tiny
  assert manifest["domain_names"] == ["d0"] == synth.domain_names("tiny")
  counts = manifest["domains"][0]["counts"]
  split = market1501.load(root / "d0")
  assert len(split.train) == counts["train"]
  assert len(split.query) == counts["query"]
  assert len(split.gallery) == counts["gallery"] - counts["junk"]  # the parser drops junk
  assert len({r.pid for r in split.train}) == counts["train_ids"] == 16
  assert len({r.pid for r in split.query}) == counts["query_ids"] == 16
  assert sum(r.pid == 0 for r in split.gallery) == counts["distractors"] > 0
  junk = list((root / "d0" / "bounding_box_test").glob("-1_c*.jpg"))
  assert len(junk) == counts["junk"] > 0
  assert 200 <= counts["train"] + counts["query"] + counts["gallery"] <= 400
  with Image.open(split.query[0].path) as img:
    assert (img.format, img.mode, img.size) == ("JPEG", "RGB", (64, 128))


def test_protocol_guarantees(tiny):
  root, _ = tiny
  split = market1501.load(root / "d0")
  train = {r.pid for r in split.train}
  test = {r.pid for r in split.query} | {r.pid for r in split.gallery if r.pid > 0}
  assert not train & test
  cams = collections.defaultdict(set)
  for r in split.gallery:
    cams[r.pid].add(r.camid)
  for q in split.query:
    assert cams[q.pid] - {q.camid}, f"query {q.path} has no gallery match under another camera"


def test_every_preset_plans_valid_protocols():
  """Planning alone (no drawing) is cheap, so every preset is checked, the big ones included."""
  for preset in synth.PRESETS.values():
    pid_offset = cam_offset = 0
    seen_pids = set()
    for key, spec in enumerate(preset.domains):
      domain = plan.make_domain(spec, 0, key, pid_offset, cam_offset)
      shots = plan.plan(domain)
      names = [(s.split, s.file_name(domain)) for s in shots]
      assert len(set(names)) == len(names), (preset.name, spec.name)
      gallery_cams = collections.defaultdict(set)
      for s in shots:
        if s.split == "gallery" and s.kind == "person":
          gallery_cams[s.pid].add(s.cam)
      assert all(gallery_cams[s.pid] - {s.cam} for s in shots if s.split == "query")
      pids = {s.pid for s in shots if s.kind == "person"}
      assert not pids & seen_pids
      seen_pids |= pids
      pid_offset += spec.train_ids + spec.test_ids
      cam_offset += spec.cameras
  small = synth.get_preset("small").domains[0]
  assert synth.domain_names("small") == ["d0"] and 150 <= small.test_ids <= 200


def test_domains_are_disjoint_and_look_different(multi):
  root, manifest = multi
  assert manifest["domain_names"] == ["d0", "d1", "u0"]
  pids, cams, means = [], [], []
  for key, name in enumerate(manifest["domain_names"]):
    split = market1501.load(root / name, domain=key)
    everything = split.train + split.query + split.gallery
    pids.append({r.pid for r in everything if r.pid > 0})
    cams.append({r.camid for r in everything})
    pixels = np.stack([np.asarray(Image.open(r.path), np.float32).mean((0, 1)) for r in everything])
    means.append(pixels.mean(0))
  for i in range(3):
    for j in range(i + 1, 3):
      assert not pids[i] & pids[j] and not cams[i] & cams[j]
      assert np.abs(means[i] - means[j]).max() > 25, (manifest["domain_names"][i], means[i], means[j])


def test_pool_and_noisy_tracklet_labels(multi):
  root, manifest = multi
  pool = manifest["pool"]
  lines = (root / "pool" / "tracklets.txt").read_text().splitlines()
  assert len(lines) == pool["images"] == len(list((root / "pool" / "images").rglob("*.jpg")))
  labels = {}
  for line in lines:
    path, label = line.split()
    assert (root / "pool" / path).is_file()
    labels[path] = int(label)
  truth = dict(line.split() for line in (root / "pool" / "identities.txt").read_text().splitlines())
  assert labels.keys() == truth.keys()
  # Tracklets over-split people (one label per tracklet), and ID switches add noise.
  assert len({int(v) for v in truth.values()}) == pool["people"] < pool["tracklets"]
  tracklet = {p: int(p.rsplit("_", 2)[1]) for p in labels}
  assert sum(labels[p] != tracklet[p] for p in labels) == pool["switched_labels"] > 0


def test_ensure_caches(tmp_path, monkeypatch):
  path = synth.ensure("tiny", tmp_path)
  assert path == tmp_path / "synthperson" / f"tiny_s0_v{synth.GENERATOR_VERSION}"
  assert json.loads((path / "manifest.json").read_text())["preset"] == "tiny"
  stamp = (path / "manifest.json").stat().st_mtime_ns

  def fail(*args):
    raise AssertionError("ensure regenerated a cached set")
  monkeypatch.setattr(writer, "generate", fail)
  assert synth.ensure("tiny", tmp_path) == path
  assert (path / "manifest.json").stat().st_mtime_ns == stamp
  assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary left behind


def test_ensure_writes_to_a_temporary_sibling_and_cleans_up(tmp_path, monkeypatch):
  final = synth.cache_dir("tiny", tmp_path)
  seen = []

  def interrupted(preset, seed, out_dir):
    out_dir = pathlib.Path(out_dir)
    seen.append(out_dir)
    assert out_dir.parent == final.parent and out_dir.name.startswith(".") and not final.exists()
    (out_dir / "d0").mkdir()
    raise KeyboardInterrupt
  monkeypatch.setattr(writer, "generate", interrupted)
  with pytest.raises(KeyboardInterrupt):
    synth.ensure("tiny", tmp_path)
  assert seen and not final.exists() and not any(final.parent.iterdir())


def test_unknown_preset_names_the_known_ones(tmp_path):
  with pytest.raises(ValueError, match="tiny.*small.*lreid"):
    synth.ensure("huge", tmp_path)
  with pytest.raises(ValueError, match="known presets"):
    synth.domain_names("huge")
  assert not (tmp_path / "synthperson").exists()
