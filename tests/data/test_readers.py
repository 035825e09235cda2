"""Every real-dataset reader on a tiny copy of its on-disk layout, quirks included.

Each test writes the real folder names, file names and list-file formats
(with a handful of ids) through `fake_tree`, reads them back with
`datasets.get`, and checks counts, pids, 0-based cameras and junk handling.
"""
import sys

import numpy as np
import pytest

from jreid.data import datasets
from jreid.errors import DatasetLayoutError


def pids(records):
  return {r.pid for r in records}


def cams(records):
  return {r.camid for r in records}


# --- Market-style folders -----------------------------------------------------------------------

def test_dukemtmc(fake_tree):
  base = "DukeMTMC-reID"
  fake_tree.images(f"{base}/bounding_box_train",
                   [f"{p:04d}_c{c}_f{p * 10 + c:07d}.jpg" for p in (1, 2, 5) for c in (1, 8)])
  fake_tree.images(f"{base}/query", ["0007_c2_f0000001.jpg", "0008_c3_f0000002.jpg"])
  # 0009 appears only in the gallery: one of Duke's distractor ids, an ordinary id.
  fake_tree.images(f"{base}/bounding_box_test",
                   ["0007_c5_f0000003.jpg", "0008_c6_f0000004.jpg", "0009_c7_f0000005.jpg"])
  split = datasets.get("dukemtmc", fake_tree.root)
  assert len(split.train) == 6 and pids(split.train) == {1, 2, 5}
  assert cams(split.train) == {0, 7}  # c1..c8 -> 0..7
  assert [r.camid for r in split.query] == [1, 2]
  assert pids(split.gallery) == {7, 8, 9} and cams(split.gallery) == {4, 5, 6}


def test_personx(fake_tree):
  fake_tree.images("PersonX/bounding_box_train", ["0001_c1s1_000001.jpg", "0001_c6s1_000002.jpg"])
  fake_tree.images("PersonX/query", ["0100_c2s1_000001.jpg"])
  fake_tree.images("PersonX/bounding_box_test", ["0100_c3s1_000002.jpg", "-1_c3s1_000003.jpg"])
  split = datasets.get("personx", fake_tree.root)
  assert [r.camid for r in split.train] == [0, 5]
  assert len(split.gallery) == 1 and split.gallery[0].pid == 100  # junk dropped


@pytest.mark.parametrize("name,boxes,n_train", [("cuhk03_labeled", "labeled", 4),
                                                 ("cuhk03_detected", "detected", 3)])
def test_cuhk03np(fake_tree, name, boxes, n_train):
  # Both benchmarks live side by side; each name must read only its own boxes.
  for folder, count in (("labeled", 4), ("detected", 3)):
    base = f"cuhk03-np/{folder}"
    fake_tree.images(f"{base}/bounding_box_train",
                     [f"{p:04d}_c{p % 2 + 1}_{k}.png" for p, k in zip((1, 1, 2, 2), range(count))])
    fake_tree.images(f"{base}/query", ["0050_c1_1.png", "0050_c2_1.png"])
    fake_tree.images(f"{base}/bounding_box_test",
                     ["0050_c1_2.png", "0050_c2_3.png", "0051_c2_1.png"])
  split = datasets.get(name, fake_tree.root)
  assert len(split.train) == n_train and all(boxes in r.path for r in split.train)
  assert cams(split.train) == {0, 1} and cams(split.query) == {0, 1}
  assert len(split.gallery) == 3 and pids(split.gallery) == {50, 51}


def test_veri(fake_tree):
  fake_tree.images("VeRi/image_train", ["0001_c001_00016450_0.jpg", "0001_c020_00016460_0.jpg",
                                        "0002_c005_00000100_1.jpg"])
  fake_tree.images("VeRi/image_query", ["0010_c002_00000001_0.jpg"])
  fake_tree.images("VeRi/image_test", ["0010_c003_00000002_0.jpg", "0010_c002_00000003_0.jpg"])
  split = datasets.get("veri", fake_tree.root)
  assert sorted(r.camid for r in split.train) == [0, 4, 19]
  assert pids(split.train) == {1, 2} and len(split.query) == 1 and cams(split.gallery) == {1, 2}


# --- List-file sets -----------------------------------------------------------------------------

def write_msmt17(tree, version="MSMT17_V1", train_dir="train", test_dir="test"):
  def name(pid, cam, k):
    return f"{pid:04d}/{pid:04d}_{k:03d}_{cam:02d}_0303morning_{k:04d}_0.jpg"

  train = [(name(p, c, k), p) for p, c, k in [(0, 1, 0), (0, 15, 1), (1, 3, 2), (1, 4, 3)]]
  val = [(name(p, c, k), p) for p, c, k in [(0, 2, 4), (1, 5, 5)]]
  query = [(name(p, c, k), p) for p, c, k in [(0, 7, 0), (1, 8, 1)]]
  gallery = [(name(p, c, k), p) for p, c, k in [(0, 9, 2), (1, 10, 3), (2, 11, 4)]]
  for listed, folder in ((train + val, train_dir), (query + gallery, test_dir)):
    tree.images(f"{version}/{folder}", [n for n, _ in listed])
  for part, listed in (("train", train), ("val", val), ("query", query), ("gallery", gallery)):
    tree.text(f"{version}/list_{part}.txt", [f"{n} {p}" for n, p in listed])


def test_msmt17_v1_lists(fake_tree):
  write_msmt17(fake_tree)
  split = datasets.get("msmt17", fake_tree.root)
  assert len(split.train) == 4 and sorted(r.camid for r in split.train) == [0, 2, 3, 14]
  assert all("/MSMT17_V1/train/" in r.path for r in split.train)
  assert [r.camid for r in split.query] == [6, 7] and all("/test/" in r.path for r in split.query)
  assert pids(split.gallery) == {0, 1, 2}  # test pids restart at 0: a namespace of their own
  merged = datasets.get("msmt17_trainval", fake_tree.root)
  assert len(merged.train) == 6 and pids(merged.train) == {0, 1}
  assert merged.query == split.query and merged.gallery == split.gallery


def test_msmt17_v2_folders(fake_tree):
  write_msmt17(fake_tree, "MSMT17_V2", "mask_train_v2", "mask_test_v2")
  split = datasets.get("msmt17", fake_tree.root)
  assert all("/mask_train_v2/" in r.path for r in split.train) and len(split.gallery) == 3


def test_msmt17_torchreid_nesting(fake_tree):
  write_msmt17(fake_tree, "msmt17/MSMT17_V1")
  assert len(datasets.get("msmt17", fake_tree.root).query) == 2


def test_msmt17_malformed_list(fake_tree):
  write_msmt17(fake_tree)
  fake_tree.text("MSMT17_V1/list_query.txt", ["0000/0000_000_01_0303morning_0015_0.jpg"])
  with pytest.raises(DatasetLayoutError, match="list_query.txt:1: expected 2 fields"):
    datasets.get("msmt17", fake_tree.root)


def write_vehicleid(tree):
  base = "VehicleID_V1.0"
  train = [("0000001", 1), ("0000002", 1), ("0000003", 2)]
  test = [(f"{1000 + k:07d}", vid) for k, vid in enumerate([7, 7, 7, 8, 8, 9])]
  tree.images(f"{base}/image", [f"{image}.jpg" for image, _ in train + test])
  tree.text(f"{base}/train_test_split/train_list.txt", [f"{i} {v}" for i, v in train])
  for size in (800, 1600, 2400):
    tree.text(f"{base}/train_test_split/test_list_{size}.txt", [f"{i} {v}" for i, v in test])


def test_vehicleid(fake_tree):
  write_vehicleid(fake_tree)
  split = datasets.get("vehicleid_small", fake_tree.root)
  assert len(split.train) == 3 and pids(split.train) == {1, 2} and cams(split.train) == {0}
  # One gallery image per vehicle, every other test image is a query.
  assert sorted(r.pid for r in split.gallery) == [7, 8, 9] and cams(split.gallery) == {1}
  assert len(split.query) == 3 and pids(split.query) == {7, 8} and cams(split.query) == {0}
  assert not {r.path for r in split.query} & {r.path for r in split.gallery}
  assert datasets.get("vehicleid_small", fake_tree.root) == split  # seeded draw
  assert len(datasets.get("vehicleid_large", fake_tree.root).gallery) == 3


def test_veriwild(fake_tree):
  base = "VERI-Wild"
  keys = {"train": ["00001/000001", "00001/000002", "00002/000003"],
          "query": ["00010/000010"], "gallery": ["00010/000010", "00010/000011", "00011/000012"]}
  fake_tree.images(f"{base}/images", [f"{k}.jpg" for k in keys["train"] + keys["gallery"]])
  split_dir = f"{base}/train_test_split"
  fake_tree.text(f"{split_dir}/train_list.txt", keys["train"])
  fake_tree.text(f"{split_dir}/test_3000_query.txt", keys["query"])
  fake_tree.text(f"{split_dir}/test_3000.txt", keys["gallery"])
  raw_cams = {"00001/000001": 12, "00001/000002": 30, "00002/000003": 12, "00010/000010": 5,
              "00010/000011": 174, "00011/000012": 30}
  fake_tree.text(f"{split_dir}/vehicle_info.txt",
                 ["id/image;Camera ID;Time;Model;Type;Color"]  # header line
                 + [f"{k};{c:03d};2018-03-13 02:00:32;Hunchback;Compact_SUV;Brown"
                    for k, c in raw_cams.items()])
  split = datasets.get("veriwild_small", fake_tree.root)
  # Raw cameras {5, 12, 30, 174} become 0..3.
  assert [r.camid for r in split.train] == [1, 2, 1] and [r.pid for r in split.train] == [1, 1, 2]
  assert [r.camid for r in split.query] == [0] and split.query[0].pid == 10
  assert [r.camid for r in split.gallery] == [0, 3, 2] and len(split.gallery) == 3
  with pytest.raises(DatasetLayoutError, match="test_5000_query.txt"):
    datasets.get("veriwild_medium", fake_tree.root)


# --- CUHK-SYSU crops and the small "unseen" sets ------------------------------------------------

def test_cuhksysu(fake_tree):
  base = "cuhksysu4reid"
  fake_tree.images(f"{base}/train", ["00015_s1234_0000000_0.jpg", "00015_s1300_0000001_1.jpg",
                                     "00016_s1234_0000002_0.jpg"])
  fake_tree.images(f"{base}/query", ["00101_s5000_0000000_0.jpg"])
  fake_tree.images(f"{base}/gallery", ["00101_s5010_0000000_0.jpg", "00101_s5011_0000001_0.jpg"])
  fake_tree.images(f"{base}/combine", ["00015_s1234_0000000_0.jpg"])  # not read
  split = datasets.get("cuhksysu", fake_tree.root)
  assert [r.pid for r in split.train] == [15, 15, 16] and cams(split.train) == {0}
  # No cameras in the set: query 0, gallery 1, so true matches survive the same-camera rule.
  assert [(r.pid, r.camid) for r in split.query] == [(101, 0)]
  assert [(r.pid, r.camid) for r in split.gallery] == [(101, 1), (101, 1)]


def test_viper_splits(fake_tree):
  fake_tree.images("viper/VIPeR/cam_a", [f"{k:03d}_45.bmp" for k in range(0, 20, 2)])
  fake_tree.images("viper/VIPeR/cam_b", [f"{k:03d}_90.bmp" for k in range(0, 20, 2)])
  split = datasets.get("viper", fake_tree.root)
  assert len(split.train) == 10 and len(pids(split.train)) == 5
  assert len(split.query) == 5 and cams(split.query) == {0}
  assert len(split.gallery) == 5 and cams(split.gallery) == {1}
  assert pids(split.query) == pids(split.gallery) and not pids(split.query) & pids(split.train)
  for r in split.query:  # pairs are matched by sorted position
    assert r.path.replace("cam_a", "cam_b").replace("_45", "_90") in {g.path for g in split.gallery}
  from jreid.data.datasets import viper
  assert viper.load(fake_tree.root / "viper") == split
  others = [pids(viper.load(fake_tree.root / "viper", split=k).train) for k in range(1, 20)]
  assert any(p != pids(split.train) for p in others)


def test_viper_unpaired(fake_tree):
  fake_tree.images("viper/cam_a", ["000_45.bmp", "001_45.bmp"])
  fake_tree.images("viper/cam_b", ["000_90.bmp"])
  with pytest.raises(DatasetLayoutError, match="sorted position"):
    datasets.get("viper", fake_tree.root)


def test_grid(fake_tree):
  from scipy.io import savemat
  base = "underground_reid"
  ids = (1, 2, 3, 4)
  fake_tree.images(f"{base}/probe", [f"{p:04d}_{p}_25004_107_32_106_221.jpeg" for p in ids])
  fake_tree.images(f"{base}/gallery", [f"{p:04d}_{9 - p}_25004_107_32_106_221.jpeg" for p in ids]
                   + ["0000_8_1_1_1_1_1.jpeg", "0000_5_2_1_1_1_1.jpeg"])  # distractors
  # One MATLAB struct per split; the third field holds the training ids.
  splits = np.empty((1, 10), dtype=object)
  for k in range(10):
    splits[0, k] = {"a": np.zeros(1), "b": np.zeros(1),
                    "trainIdx": np.array([[1, 2]] if k == 0 else [[3, 4]], dtype=float)}
  savemat(fake_tree.root / base / "features_and_partitions.mat", {"trainIdxAll": splits})
  split = datasets.get("grid", fake_tree.root)
  assert pids(split.train) == {1, 2} and len(split.train) == 4
  assert [(r.pid, r.camid) for r in split.query] == [(3, 2), (4, 3)]
  assert sorted((r.pid, r.camid) for r in split.gallery) == [(0, 4), (0, 7), (3, 5), (4, 4)]
  from jreid.data.datasets import grid
  assert pids(grid.load(fake_tree.root / base, split=3).train) == {3, 4}


def test_grid_needs_scipy(fake_tree, monkeypatch):
  fake_tree.images("underground_reid/probe", ["0001_1_25004_107_32_106_221.jpeg"])
  fake_tree.images("underground_reid/gallery", ["0001_2_25004_107_32_106_221.jpeg"])
  monkeypatch.setitem(sys.modules, "scipy.io", None)
  with pytest.raises(DatasetLayoutError, match="needs scipy"):
    datasets.get("grid", fake_tree.root)


def test_prid_single_shot(fake_tree):
  base = "prid_2011/single_shot"
  fake_tree.images(f"{base}/cam_a", [f"person_{p:04d}.png" for p in (1, 2, 3, 4, 5, 6, 201)])
  fake_tree.images(f"{base}/cam_b", [f"person_{p:04d}.png" for p in (1, 2, 3, 4, 5, 6, 201, 202)])
  split = datasets.get("prid", fake_tree.root)
  assert len(split.train) == 6 and len(pids(split.train)) == 3 and cams(split.train) == {0, 1}
  assert len(split.query) == 3 and cams(split.query) == {0}
  assert not pids(split.query) & pids(split.train) and 201 not in pids(split.query)
  # Gallery: cam_b of the test persons + cam_b-only persons above 200 as distractors.
  assert pids(split.gallery) == pids(split.query) | {201, 202} and cams(split.gallery) == {1}


def test_cuhk01(fake_tree):
  fake_tree.images("cuhk01/campus",
                   [f"{p:04d}{k:03d}.png" for p in range(1, 7) for k in range(1, 5)])
  split = datasets.get("cuhk01", fake_tree.root)
  assert len(split.train) == 12 and len(pids(split.train)) == 3 and cams(split.train) == {0, 1}
  assert len(split.query) == 6 and all(r.path.endswith(("001.png", "002.png")) for r in split.query)
  assert len(split.gallery) == 6 and cams(split.gallery) == {1}
  assert pids(split.query) == pids(split.gallery) and not pids(split.query) & pids(split.train)


def test_cuhk02(fake_tree):
  for pair in ("P1", "P2", "P3", "P4", "P5"):
    for cam in ("cam1", "cam2"):
      # Person numbers restart in every pair.
      fake_tree.images(f"cuhk02/Dataset/{pair}/{cam}",
                       [f"{p:03d}_{k}.png" for p in (1, 2) for k in (1, 2)])
  split = datasets.get("cuhk02", fake_tree.root)
  assert len(split.train) == 4 * 2 * 4 and pids(split.train) == set(range(8))
  assert cams(split.train) == set(range(8))
  assert len(split.query) == 4 and cams(split.query) == {8} and pids(split.query) == {0, 1}
  assert len(split.gallery) == 4 and cams(split.gallery) == {9} and pids(split.gallery) == {0, 1}


def test_sensereid(fake_tree):
  fake_tree.images("SenseReID/test_probe", ["0000001_01.jpg", "0000002_01.jpg"])
  fake_tree.images("SenseReID/test_gallery", ["0000001_02.jpg", "0000002_03.jpg", "0000099_02.jpg"])
  split = datasets.get("sensereid", fake_tree.root)
  assert split.train == []  # test-only
  assert [(r.pid, r.camid) for r in split.query] == [(1, 0), (2, 0)]
  assert [(r.pid, r.camid) for r in split.gallery] == [(1, 1), (2, 2), (99, 1)]


def test_ilids(fake_tree):
  counts = {1: 2, 2: 3, 3: 4, 4: 2, 5: 4, 6: 2}
  fake_tree.images("ilids/i-LIDS_Pedestrian/Persons",
                   [f"{p:04d}{k:03d}.jpg" for p, n in counts.items() for k in range(1, n + 1)])
  split = datasets.get("ilids", fake_tree.root)
  assert len(pids(split.train)) == 3 and len(split.query) == 3
  assert len(split.train) == sum(counts[p] for p in pids(split.train))
  test = set(counts) - pids(split.train)
  assert sorted(r.pid for r in split.query) == sorted(test) == sorted(r.pid for r in split.gallery)
  for q in split.query:  # image number stands in for the camera: never equal for a pair
    g = next(g for g in split.gallery if g.pid == q.pid)
    assert q.camid != g.camid and q.path != g.path and q.camid == int(q.path[-7:-4]) - 1
  assert datasets.get("ilids", fake_tree.root) == split


def test_luperson(fake_tree):
  fake_tree.images("LUPerson/video_a", ["000001.jpg", "000002.jpg"])
  fake_tree.images("LUPerson/video_b/sub", ["x.png"])
  fake_tree.text("LUPerson/readme.txt", ["not an image"])
  split = datasets.get("luperson", fake_tree.root)
  assert [r.pid for r in split.train] == [0, 1, 2] and cams(split.train) == {0}
  assert split.query == [] and split.gallery == []


# --- Errors -------------------------------------------------------------------------------------

def expected_layout(name):
  load = datasets.DATASETS[name][1]
  return sys.modules[getattr(load, "func", load).__module__].EXPECTED_LAYOUT


@pytest.mark.parametrize("name", sorted(datasets.DATASETS))
def test_missing_layout_names_expected_layout(tmp_path, name):
  with pytest.raises(DatasetLayoutError) as err:
    datasets.get(name, tmp_path)
  assert expected_layout(name) in str(err.value)


@pytest.mark.parametrize("name,folder,bad", [
    ("dukemtmc", "DukeMTMC-reID/bounding_box_train", "person_7.jpg"),
    ("cuhksysu", "cuhksysu4reid/train", "15_1234.jpg"),
    ("prid", "prid_2011/single_shot/cam_a", "p_0001.png"),
    ("cuhk01", "cuhk01/campus", "1_1.png"),
    ("sensereid", "SenseReID/test_probe", "person.jpg"),
])
def test_misnamed_file(fake_tree, name, folder, bad):
  fake_tree.images(folder, [bad])
  with pytest.raises(DatasetLayoutError, match="unexpected file name") as err:
    datasets.get(name, fake_tree.root)
  assert expected_layout(name) in str(err.value)


def test_protocol_options_are_checked(tmp_path):
  from jreid.data.datasets import cuhk03np, grid, vehicleid, viper
  from jreid.errors import ConfigError
  for call in (lambda: viper.load(tmp_path, split=20), lambda: grid.load(tmp_path, split=10),
               lambda: vehicleid.load(tmp_path, test_size=1000),
               lambda: cuhk03np.load(tmp_path, boxes="both")):
    with pytest.raises(ConfigError):
      call()


# --- Id and camera rules ------------------------------------------------------------------------
# A camera 0 of a set numbered from 1 would be stored as -1 and escape the same-camera removal; a
# pid outside the set's ids would train as a person or be scored as one. Each is refused, naming
# the file (or list line) and the expected layout.

MARKET_STYLE = {  # name -> (train folder, query folder, gallery folder)
    "dukemtmc": ("DukeMTMC-reID/bounding_box_train", "DukeMTMC-reID/query",
                 "DukeMTMC-reID/bounding_box_test"),
    "cuhk03_labeled": ("cuhk03-np/labeled/bounding_box_train", "cuhk03-np/labeled/query",
                       "cuhk03-np/labeled/bounding_box_test"),
    "personx": ("PersonX/bounding_box_train", "PersonX/query", "PersonX/bounding_box_test"),
    "veri": ("VeRi/image_train", "VeRi/image_query", "VeRi/image_test"),
}


def market_style_name(name, pid, cam, k=9):
  """A file name of dataset `name`, pid and camera as written (e.g. "0000", "0")."""
  return {"dukemtmc": f"{pid}_c{cam}_f000000{k}.jpg", "cuhk03_labeled": f"{pid}_c{cam}_{k}.png",
          "personx": f"{pid}_c{cam}s1_00000{k}.jpg", "veri": f"{pid}_c{cam}_0000000{k}_0.jpg"}[name]


def write_market_style(tree, name, **bad):
  """A valid tiny copy (train id 1, test id 50, cameras 1 and 2), plus one file per `bad` part."""
  folders = dict(zip(("train", "query", "gallery"), MARKET_STYLE[name]))
  for part, folder in folders.items():
    pid = "0001" if part == "train" else "0050"
    tree.images(folder, [market_style_name(name, pid, cam, k) for k, cam in ((1, 1), (2, 2))])
  return [tree.images(folders[part], [file_name])[0] for part, file_name in bad.items()]


@pytest.mark.parametrize("name", sorted(MARKET_STYLE))
def test_market_style_valid_copy(fake_tree, name):
  write_market_style(fake_tree, name)
  split = datasets.get(name, fake_tree.root)
  assert pids(split.train) == {1} and cams(split.query) == {0, 1}


@pytest.mark.parametrize("name", sorted(MARKET_STYLE))
@pytest.mark.parametrize("part,pid,cam,why", [
    ("query", "0050", "0", "camera c0 does not exist"),
    ("gallery", "0050", "000", "camera c000 does not exist"),
    ("train", "-3", "1", "person id -3 does not exist"),
    ("train", "0000", "1", "person id 0 marks a gallery distractor"),
    ("query", "0000", "2", "person id 0 marks a gallery distractor"),
])
def test_market_style_rules(fake_tree, name, part, pid, cam, why):
  [bad] = write_market_style(fake_tree, name, **{part: market_style_name(name, pid, cam)})
  with pytest.raises(DatasetLayoutError, match=why) as err:
    datasets.get(name, fake_tree.root)
  assert str(bad) in str(err.value) and expected_layout(name) in str(err.value)


@pytest.mark.parametrize("name", sorted(MARKET_STYLE))
def test_market_style_junk_and_gallery_distractors_are_kept_out_of_the_scores(fake_tree, name):
  write_market_style(fake_tree, name, train=market_style_name(name, "-1", 1),
                     gallery=market_style_name(name, "0000", 1))
  split = datasets.get(name, fake_tree.root)
  assert pids(split.train) == {1} and pids(split.gallery) == {0, 50}


def test_msmt17_camera_00_and_negative_pid(fake_tree):
  write_msmt17(fake_tree)
  good = [f"{n} {p}" for n, p in [("0000/0000_000_07_0303morning_0000_0.jpg", 0),
                                  ("0001/0001_001_08_0303morning_0001_0.jpg", 1)]]
  fake_tree.text("MSMT17_V1/list_query.txt", good + ["0001/0001_002_00_0303morning_0002_0.jpg 1"])
  with pytest.raises(DatasetLayoutError, match=r"list_query.txt: 0001/0001_002_00.*camera 00 "
                     r"does not exist"):
    datasets.get("msmt17", fake_tree.root)
  fake_tree.text("MSMT17_V1/list_query.txt", good + ["0001/0001_002_03_0303morning_0002_0.jpg -1"])
  with pytest.raises(DatasetLayoutError, match=r"list_query.txt: .*id -1 is not an id"):
    datasets.get("msmt17", fake_tree.root)


def write_grid(tree, probe=(), gallery=()):
  from scipy.io import savemat
  base = "underground_reid"
  tree.images(f"{base}/probe", [f"{p:04d}_{p}_25004_107_32_106_221.jpeg" for p in (1, 2, 3)]
              + list(probe))
  tree.images(f"{base}/gallery", [f"{p:04d}_{p + 1}_25004_107_32_106_221.jpeg" for p in (1, 2, 3)]
              + ["0000_8_1_1_1_1_1.jpeg"] + list(gallery))
  splits = np.empty((1, 10), dtype=object)
  for k in range(10):
    splits[0, k] = {"a": np.zeros(1), "b": np.zeros(1), "trainIdx": np.array([[1]], dtype=float)}
  savemat(tree.root / base / "features_and_partitions.mat", {"trainIdxAll": splits})


@pytest.mark.parametrize("probe,gallery,why", [
    (["0004_0_25004_107_32_106_221.jpeg"], [], "0004_0_25004.*camera 0 does not exist"),
    ([], ["0004_0_1_1_1_1_1.jpeg"], "gallery/0004_0_1.*camera 0 does not exist"),
    (["0000_3_1_1_1_1_1.jpeg"], [], "probe/0000_3.*id 0 is not an id"),
    ([], ["-1_3_1_1_1_1_1.jpeg"], "gallery/-1_3.*id -1 is not an id"),
])
def test_grid_rules(fake_tree, probe, gallery, why):
  write_grid(fake_tree, probe, gallery)
  with pytest.raises(DatasetLayoutError, match=why):
    datasets.get("grid", fake_tree.root)


def test_grid_distractors_stay_in_the_gallery(fake_tree):
  write_grid(fake_tree)
  split = datasets.get("grid", fake_tree.root)
  assert pids(split.gallery) == {0, 2, 3} and pids(split.query) == {2, 3}


@pytest.mark.parametrize("image", ["000", "005"])
def test_cuhk01_image_numbers_outside_1_to_4(fake_tree, image):
  fake_tree.images("cuhk01/campus", [f"{p:04d}{k:03d}.png" for p in (1, 2) for k in range(1, 5)]
                   + [f"0002{image}.png"])
  with pytest.raises(DatasetLayoutError, match=f"0002{image}.png: image number {image}"):
    datasets.get("cuhk01", fake_tree.root)


def test_ilids_image_number_000(fake_tree):
  fake_tree.images("ilids/Persons", ["0001001.jpg", "0001002.jpg", "0002000.jpg", "0002001.jpg"])
  with pytest.raises(DatasetLayoutError, match=r"0002000.jpg: camera \(image number\) 000"):
    datasets.get("ilids", fake_tree.root)


def test_vehicleid_negative_id(fake_tree):
  write_vehicleid(fake_tree)
  fake_tree.text("VehicleID_V1.0/train_test_split/train_list.txt", ["0000001 1", "0000002 -4"])
  with pytest.raises(DatasetLayoutError, match=r"train_list.txt: 0000002: id -4 is not an id"):
    datasets.get("vehicleid_small", fake_tree.root)


def test_veriwild_negative_id(fake_tree):
  base = "VERI-Wild"
  fake_tree.images(f"{base}/images", ["00001/000001.jpg", "-0002/000002.jpg"])
  fake_tree.text(f"{base}/train_test_split/train_list.txt", ["00001/000001", "-0002/000002"])
  for name in ("test_3000_query.txt", "test_3000.txt"):
    fake_tree.text(f"{base}/train_test_split/{name}", ["00001/000001"])
  fake_tree.text(f"{base}/train_test_split/vehicle_info.txt",
                 ["00001/000001;001;t;m;t;c", "-0002/000002;002;t;m;t;c"])
  with pytest.raises(DatasetLayoutError, match=r"train_list.txt: -0002/000002: id -2 is not an id"):
    datasets.get("veriwild_small", fake_tree.root)
