"""`synth_<preset>/pool`: SynthPerson's pre-training pool read with its tracklet-noisy labels."""
import json

import pytest

from jreid.data import datasets, synth
from jreid.data.datasets import synth_pool
from jreid.data.records import Record
from jreid.errors import ConfigError, DatasetLayoutError


@pytest.fixture(scope="module")
def pool_root(tmp_path_factory):
  root = tmp_path_factory.mktemp("data")
  return root, datasets.get("synth_tiny_multi/pool", root)


def test_records_follow_tracklets_txt(pool_root):
  root, split = pool_root
  folder = synth.cache_dir("tiny_multi", root) / "pool"
  expected = []
  for line in (folder / "tracklets.txt").read_text().splitlines():
    relative, label = line.split(" ")
    _, domain_dir, file_name = relative.split("/")
    camera = file_name.split("_")[0]
    expected.append(Record(str(folder / relative), int(label), int(camera[1:]) - 1,
                           int(domain_dir[1:])))
  assert split.train == expected
  assert split.query == [] and split.gallery == []
  manifest = json.loads((folder.parent / "manifest.json").read_text())["pool"]
  assert len(split.train) == manifest["images"]
  assert len({r.pid for r in split.train}) == manifest["labels"]
  assert {r.domain for r in split.train} == set(range(manifest["domains"]))
  assert min(r.camid for r in split.train) == 0


def test_domain_offsets_the_pool_domains(pool_root):
  root, split = pool_root
  shifted = datasets.get("synth_tiny_multi/pool", root, domain=5)
  assert [r.domain for r in shifted.train] == [r.domain + 5 for r in split.train]
  assert [(r.path, r.pid, r.camid) for r in shifted.train] == [
      (r.path, r.pid, r.camid) for r in split.train]


def test_a_preset_without_a_pool_names_those_with_one(tmp_path):
  with pytest.raises(ConfigError, match=r"'tiny' has no pre-training pool.*'lreid', 'tiny_multi'"):
    datasets.get("synth_tiny/pool", tmp_path)
  assert not (tmp_path / "synthperson").exists()  # nothing generated
  with pytest.raises(ConfigError, match="or 'pool'"):
    datasets.get("synth_tiny_multi/d9", tmp_path)


def _pool(tmp_path, lines, images=("images/p00/c1_000000_00.jpg", "images/p01/c3_000001_00.jpg")):
  for name in images:
    (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / name).write_bytes(b"jpeg")  # the parser reads names, not pixels
  (tmp_path / "tracklets.txt").write_text("".join(f"{line}\n" for line in lines))
  return tmp_path


def test_a_small_hand_written_pool(tmp_path, monkeypatch):
  folder = _pool(tmp_path, ["images/p00/c1_000000_00.jpg 4", "", "images/p01/c3_000001_00.jpg 0"])
  monkeypatch.chdir(folder)
  split = synth_pool.load(".", domain=2)  # a relative folder still gives absolute paths
  assert split.train == [Record(str(folder / "images/p00/c1_000000_00.jpg"), 4, 0, 2),
                         Record(str(folder / "images/p01/c3_000001_00.jpg"), 0, 2, 3)]


@pytest.mark.parametrize("lines,message", [
    (["images/p00/c1_000000_00.jpg"], r"tracklets.txt:1: expected 2 fields, got 1"),
    (["images/p00/c1_000000_00.jpg 0", "images/p01/c3_000001_00.jpg 1 7"],
     r"tracklets.txt:2: expected 2 fields, got 3"),
    (["images/p00/c1_000000_00.jpg 0", "", "images/p01/c3_000001_00.jpg x"],
     r"tracklets.txt:3: label 'x' is not a non-negative integer"),
    (["images/p00/c1_000000_00.jpg -1"], r"tracklets.txt:1: label '-1'"),
    (["p00/c1_000000_00.jpg 0"], r"tracklets.txt:1: unexpected image path 'p00/c1_000000_00.jpg'"),
    (["images/p00/c1_000000_00.jpg 0", "images/p00/c2_000009_00.jpg 1"],
     r"tracklets.txt:2: listed image .*images/p00/c2_000009_00.jpg does not exist"),
    ([], r"empty list file .*tracklets.txt"),
])
def test_bad_lines_name_the_line_and_the_layout(tmp_path, lines, message):
  folder = _pool(tmp_path, lines)
  with pytest.raises(DatasetLayoutError, match=message) as err:
    synth_pool.load(folder)
  assert synth_pool.EXPECTED_LAYOUT in str(err.value)


def test_missing_folder_or_list_file(tmp_path):
  with pytest.raises(DatasetLayoutError, match=r"missing folder .*nowhere") as err:
    synth_pool.load(tmp_path / "nowhere")
  assert synth_pool.EXPECTED_LAYOUT in str(err.value)
  (tmp_path / "images").mkdir()
  with pytest.raises(DatasetLayoutError, match=r"missing file .*tracklets.txt") as err:
    synth_pool.load(tmp_path)
  assert synth_pool.EXPECTED_LAYOUT in str(err.value)
