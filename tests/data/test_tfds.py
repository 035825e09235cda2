"""jreid's tensorflow-datasets builds (ArrayRecord) against the folder reader they reuse.

Every builder is run on a tiny copy of its dataset's layout (the fixture trees of
tests/conftest.py and tests/data/test_readers.py, and SynthPerson's `tiny`
presets); the reference is jreid's folder reader on the same folders and the
files' own bytes.
"""
import pathlib
import pickle
import shutil
import subprocess
import sys
import textwrap

import ml_collections
import numpy as np
import pytest

from jreid import config_blocks, config_rules
from jreid.data import array_record_source, datasets, pipeline, posterior_cache, sources, synth
from jreid.data import tfds_builders, transforms
from jreid.data.records import Record, relabel
from jreid.errors import ConfigError, DatasetLayoutError, ImageReadError
from jreid.tools import tfds_build
from tests.conftest import FakeTree, write_market_tree
from tests.data.test_readers import write_msmt17

OPTIONS = pipeline.ImageOptions(height=32, width=16, random_patch_p=0.5, random_patch_pool=4)
# jreid name -> the folder a user downloads, relative to the data root.
MANUAL = {"market1501": "Market-1501-v15.09.15", "dukemtmc": "DukeMTMC-reID", "msmt17": ".",
          "msmt17_trainval": ".", "cuhk03_labeled": "cuhk03-np", "cuhk03_detected": "cuhk03-np",
          "synth_tiny": ".", "synth_tiny_multi/u0": ".", "synth_tiny_multi/pool": "."}


def write_duke(tree: FakeTree):
  base = "DukeMTMC-reID"
  tree.images(f"{base}/bounding_box_train",
              [f"{p:04d}_c{c}_f{p * 10 + c:07d}.jpg" for p in (1, 2, 5) for c in (1, 8)])
  tree.images(f"{base}/query", ["0007_c2_f0000001.jpg", "0008_c3_f0000002.jpg"])
  tree.images(f"{base}/bounding_box_test", ["0007_c5_f0000003.jpg", "0008_c6_f0000004.jpg",
                                            "0009_c7_f0000005.jpg", "-1_c7_f0000006.jpg"])


def write_cuhk03(tree: FakeTree):
  for boxes, count in (("labeled", 4), ("detected", 3)):
    base = f"cuhk03-np/{boxes}"
    tree.images(f"{base}/bounding_box_train",
                [f"{p:04d}_c{p % 2 + 1}_{k}.png" for p, k in zip((1, 1, 2, 2), range(count))])
    tree.images(f"{base}/query", ["0050_c1_1.png", "0050_c2_1.png"])
    tree.images(f"{base}/bounding_box_test", ["0050_c1_2.png", "0050_c2_3.png", "0051_c2_1.png"])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
  """(data root holding every layout, tfds_dir holding a build of every name in MANUAL)."""
  root = tmp_path_factory.mktemp("tfds_root")
  tree = FakeTree(root)
  write_market_tree(root)
  write_duke(tree)
  write_msmt17(tree)
  write_cuhk03(tree)
  tfds_dir = root / "tfds"
  import tensorflow_datasets as tfds
  tfds.disable_progress_bar()
  for name, folder in MANUAL.items():
    tfds_builders.build(name, root / folder, tfds_dir)
  return root, tfds_dir


def _file_bytes(record):
  return pathlib.Path(record.path).read_bytes()


@pytest.mark.parametrize("name", sorted(MANUAL))
def test_records_and_images_equal_the_folder_reader(built, name):
  root, tfds_dir = built
  folder, stored = datasets.get(name, root), array_record_source.get(name, tfds_dir, root)
  for part in ("train", "query", "gallery"):
    expected, got = getattr(folder, part), getattr(stored, part)
    assert [(r.path, r.pid, r.camid, r.domain) for r in got] == \
        [(r.path, r.pid, r.camid, r.domain) for r in expected]
    assert all(r.stored is not None for r in got)
    for want, have in zip(expected, got):
      assert have.stored() == _file_bytes(want)  # stored as on disk, not re-encoded
      assert np.array_equal(transforms.decode_record(have), transforms.decode(want.path))
  assert stored == folder  # `stored` takes no part in equality


@pytest.mark.parametrize("name", ["cuhk03_detected", "synth_tiny_multi/pool"])
def test_tfds_own_reader_sees_the_same_examples(built, name):
  """tfds' numpy data source (its own decoding, PIL) agrees with jreid's array_record reading."""
  import tensorflow_datasets as tfds
  root, tfds_dir = built
  build = array_record_source.build_of(name)
  reference = tfds.builder_from_directory(str(build.directory(tfds_dir))).as_data_source()
  split = array_record_source.get(name, tfds_dir, root)
  for part in ("train", "query", "gallery"):
    records = getattr(split, part)
    assert len(records) == (len(reference[part]) if part in reference else 0)
    for index, record in enumerate(records):
      example = reference[part][index]
      assert (record.pid, record.camid, record.domain) == \
          (example["pid"], example["camid"], example["domain"])
      assert record.path.endswith("/" + example["file_name"].decode())
      assert np.array_equal(transforms.decode_record(record), example["image"])


def test_the_build_is_read_without_its_folder(built, tmp_path):
  """Moved folders: the images come from the ArrayRecord files; the paths are only names."""
  root, _ = built
  copy = tmp_path / "root"
  shutil.copytree(root / "Market-1501-v15.09.15", copy / "Market-1501-v15.09.15")
  tfds_builders.build("market1501", copy / "Market-1501-v15.09.15", tmp_path / "tfds")
  expected = [transforms.decode(r.path) for r in datasets.get("market1501", copy).gallery]
  shutil.rmtree(copy)
  split = sources.get("market1501", ml_collections.ConfigDict(
      dict(format="tfds", tfds_dir=str(tmp_path / "tfds"), root=str(copy))))
  assert all(np.array_equal(transforms.decode_record(r), e) for r, e in zip(split.gallery, expected))
  assert not pathlib.Path(split.gallery[0].path).exists()
  moved = pickle.loads(pickle.dumps(split.gallery))  # as grain worker processes receive them
  assert np.array_equal(transforms.decode_record(moved[-1]), expected[-1])
  digest = posterior_cache.digest(split.train, "vae", 64)  # keyed by build, not by file stat
  assert digest != posterior_cache.digest(split.train[1:], "vae", 64)


def _both(built, name="market1501"):
  root, tfds_dir = built
  return (relabel(datasets.get(name, root).train),
          relabel(array_record_source.get(name, tfds_dir, root).train))


def _same_batches(a, b):
  assert a.keys() == b.keys()
  for key in a:
    np.testing.assert_array_equal(a[key], b[key], err_msg=key)


def test_train_batches_equal_the_folder_runs_and_resume(built):
  folder, stored = _both(built)
  make = lambda records: pipeline.train_dataset(records, options=OPTIONS, batch_size=8,
                                                num_instances=4, num_steps=5, seed=7)
  expected = list(make(folder))
  iterator = iter(make(stored))
  for want in expected[:3]:
    _same_batches(want, next(iterator))
  resumed = iter(make(stored))
  resumed.set_state(iterator.get_state())
  for want in expected[3:]:
    _same_batches(want, next(resumed))
  assert next(resumed, None) is None


def test_view_and_test_batches_equal_the_folder_runs(built):
  folder, stored = _both(built, "synth_tiny")
  views = lambda records: pipeline.view_dataset(records, options=OPTIONS, batch_size=6,
                                                num_steps=2, seed=1)
  for want, have in zip(views(folder), views(stored), strict=True):
    _same_batches(want, have)
  tests = lambda records: pipeline.test_batches(records[:13], options=OPTIONS, batch_size=4)
  for want, have in zip(tests(folder), tests(stored), strict=True):
    _same_batches(want, have)


def test_the_loop_reads_tfds_through_config_data(built):
  from jreid.train import loop
  root, tfds_dir = built
  data = config_blocks.data(train="market1501,synth_tiny", test="msmt17", root=str(root),
                            height=32, width=16)
  config = ml_collections.ConfigDict(dict(data=data))
  folder = loop.load_data(config)
  config.data.update(format="tfds", tfds_dir=str(tfds_dir))
  config_rules.check(config.data, config_blocks.DATA_RULES, "config.data")
  stored = loop.load_data(config)
  assert stored.train == folder.train and stored.tests == folder.tests
  assert stored.num_classes == folder.num_classes
  assert all(r.stored is not None for r in stored.train + stored.tests["msmt17"].gallery)
  config.data.format = "tfd"
  with pytest.raises(ConfigError, match=r"config.data.format='tfd': expected one of 'folder', 'tfds'"):
    config_rules.check(config.data, config_blocks.DATA_RULES, "config.data")


def test_building_and_reading_need_no_tensorflow(built, tmp_path):
  """In a process that cannot find TensorFlow (installed or not), a build and its reading work."""
  root, _ = built
  script = textwrap.dedent(f"""
      import importlib.machinery, sys
      class HideTensorflow(importlib.machinery.PathFinder):  # as if it were not installed
        @classmethod
        def find_spec(cls, name, path=None, target=None):
          if name.partition(".")[0] != "tensorflow":
            return super().find_spec(name, path, target)
      sys.meta_path = [HideTensorflow if f is importlib.machinery.PathFinder else f
                       for f in sys.meta_path]
      import tensorflow_datasets as tfds
      tfds.disable_progress_bar()
      from jreid.data import array_record_source, tfds_builders, transforms
      tfds_builders.build("dukemtmc", {str(root / 'DukeMTMC-reID')!r}, {str(tmp_path)!r})
      split = array_record_source.get("dukemtmc", {str(tmp_path)!r}, {str(root)!r})
      print(len(split.gallery), transforms.decode_record(split.gallery[0]).shape,
            "tensorflow" in sys.modules)
      """)
  done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                        cwd=pathlib.Path(__file__).parents[2], timeout=120)
  assert done.returncode == 0, done.stderr[-2000:]
  assert done.stdout.split("\n")[-2] == "3 (2, 2, 3) False"


# --- Bad input ------------------------------------------------------------------------------------

def test_missing_manual_folder(tmp_path, capsys):
  with pytest.raises(DatasetLayoutError, match=r"manual folder .*/nowhere for 'market1501' does not exist"):
    tfds_builders.build("market1501", tmp_path / "nowhere", tmp_path / "tfds")
  assert tfds_build.main(["--dataset", "dukemtmc", "--manual_dir", str(tmp_path / "nowhere"),
                          "--data_dir", str(tmp_path / "tfds")]) == 1
  assert "jreid.tools.tfds_build: error: manual folder" in capsys.readouterr().err


def test_manual_folder_of_another_layout(tmp_path):
  """The parser's own layout error reaches the user through tfds."""
  FakeTree(tmp_path).images("Market/bounding_box_train", ["person.jpg"])
  with pytest.raises(DatasetLayoutError, match="bounding_box_train/, <root>/query/"):
    tfds_builders.build("market1501", tmp_path / "Market", tmp_path / "tfds")


def test_tfds_dir_without_the_build(built, tmp_path):
  root, tfds_dir = built
  with pytest.raises(DatasetLayoutError, match=r"tfds_dir=.*/absent.*does not exist.*tfds_build"):
    array_record_source.get("market1501", tmp_path / "absent", root)
  tmp_path.joinpath("empty").mkdir()
  with pytest.raises(DatasetLayoutError, match=r"'dukemtmc' is not built in .*--dataset dukemtmc"):
    array_record_source.get("dukemtmc", tmp_path / "empty", root)
  with pytest.raises(DatasetLayoutError, match=r"'synth_tiny_multi/d1' is not built"):
    array_record_source.get("synth_tiny_multi/d1", tfds_dir, root)  # only u0 and pool are


def test_wrong_version_and_wrong_dataset(built, tmp_path, monkeypatch):
  root, tfds_dir = built
  shutil.copytree(tfds_dir / "market1501" / "1.0.0", tmp_path / "market1501" / "0.9.0")
  with pytest.raises(DatasetLayoutError, match=r"builds of version \['0.9.0'\], jreid reads "
                                               r"version 1.0.0 of 'market1501'"):
    array_record_source.get("market1501", tmp_path, root)
  shutil.copytree(tfds_dir / "market1501" / "1.0.0", tmp_path / "dukemtmc_reid" / "1.0.0")
  with pytest.raises(DatasetLayoutError, match=r"not jreid's build of 'dukemtmc_reid'.*build "
                                               r"'market1501'"):
    array_record_source.get("dukemtmc", tmp_path, root)
  monkeypatch.setattr(synth, "GENERATOR_VERSION", synth.GENERATOR_VERSION + 1)
  with pytest.raises(DatasetLayoutError, match="SynthPerson generator version"):
    array_record_source.get("synth_tiny", tfds_dir, root)


def test_names_without_a_builder():
  for name in ("viper", "synth_nosuch", "synth_tiny/d9", "synth_tiny/pool"):
    with pytest.raises(ConfigError, match=f"dataset '{name}' has no tensorflow-datasets builder"):
      array_record_source.build_of(name)


def test_cli_builds_and_lists(built, tmp_path, capsys):
  root, _ = built
  assert tfds_build.main(["--dataset", "cuhk03_detected", "--manual_dir", str(root / "cuhk03-np"),
                          "--data_dir", str(tmp_path)]) == 0
  assert "cuhk03_np/detected/1.0.0: train 3, query 2, gallery 3 images" in capsys.readouterr().out
  assert tfds_build.main(["--list"]) == 0
  listing = capsys.readouterr().out
  assert "cuhk03_np" in listing and "lreid_pool" in listing and "market1501" in listing


def test_a_damaged_stored_image_names_its_record():
  record = Record("Market-1501-v15.09.15/query/0001_c1s1_000001_01.jpg", 1, 0,
                  stored=lambda: b"\xff\xd8 not a jpeg")
  with pytest.raises(ImageReadError, match=r"cannot read image Market-1501-v15.09.15/query/0001_c1s1"):
    transforms.decode_record(record)
