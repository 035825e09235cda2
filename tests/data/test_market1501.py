import pytest

from jreid.data import datasets
from jreid.data.datasets import market1501
from jreid.errors import ConfigError, DatasetLayoutError


def test_parses_official_protocol(market_root):
  split = datasets.get("market1501", market_root)
  assert len(split.train) == 8 * 4 and {r.pid for r in split.train} == set(range(1, 9))
  assert len(split.query) == 6 and all(r.camid == 0 for r in split.query)
  # 6 ids x 4 images + one distractor; the junk (-1) image is dropped everywhere.
  assert len(split.gallery) == 25
  assert sum(r.pid == 0 for r in split.gallery) == 1
  assert all(r.pid > 0 for r in split.train + split.query)
  assert {r.camid for r in split.gallery} == {0, 1, 2}  # cameras are 0-based


def test_name_parsing():
  assert market1501.parse_name("0002_c1s1_000451_03.jpg") == (2, 0)
  assert market1501.parse_name("-1_c6s2_000001_00.jpg") == (-1, 5)
  with pytest.raises(DatasetLayoutError, match="0002_c1s1_000451_03.jpg"):
    market1501.parse_name("person_2.jpg")


def test_missing_folder_names_the_layout(tmp_path):
  with pytest.raises(DatasetLayoutError, match="bounding_box_train"):
    datasets.get("market1501", tmp_path)


def test_missing_split_folder(market_root):
  import shutil
  shutil.rmtree(market_root / "Market-1501-v15.09.15" / "query")
  with pytest.raises(DatasetLayoutError, match="missing folder .*query"):
    datasets.get("market1501", market_root)


def test_unknown_dataset():
  with pytest.raises(ConfigError, match="market1501"):
    datasets.get("market1502", "/tmp")


# --- Id and camera rules: a wrong one would not fail later, only give wrong numbers -----------

def test_camera_zero_is_refused_with_the_file_and_layout(market_root):
  bad = market_root / "Market-1501-v15.09.15" / "query" / "0100_c0s1_000000_01.jpg"
  (bad.parent / "0100_c1s1_000000_01.jpg").rename(bad)
  with pytest.raises(DatasetLayoutError) as err:
    datasets.get("market1501", market_root)
  message = str(err.value)
  assert str(bad) in message and "camera c0" in message and market1501.EXPECTED_LAYOUT in message
  with pytest.raises(DatasetLayoutError, match="camera c0"):
    market1501.parse_name("0002_c0s1_000451_03.jpg")


@pytest.mark.parametrize("sub,name,why", [
    ("bounding_box_train", "-2_c1s1_000001_01.jpg", "person id -2 does not exist"),
    ("bounding_box_test", "-7_c2s1_000001_01.jpg", "person id -7 does not exist"),
    ("bounding_box_train", "0000_c1s1_000001_01.jpg", "person id 0 marks a gallery distractor"),
    ("query", "0000_c1s1_000001_01.jpg", "person id 0 marks a gallery distractor"),
])
def test_ids_outside_the_protocol_are_refused(market_root, sub, name, why):
  path = market_root / "Market-1501-v15.09.15" / sub / name
  path.write_bytes((market_root / "Market-1501-v15.09.15" / "query" / "0100_c1s1_000000_01.jpg")
                   .read_bytes())
  with pytest.raises(DatasetLayoutError, match=why) as err:
    datasets.get("market1501", market_root)
  assert str(path) in str(err.value)


def test_junk_anywhere_and_distractors_in_the_gallery_are_the_protocol(market_root):
  folder = market_root / "Market-1501-v15.09.15"
  image = (folder / "query" / "0100_c1s1_000000_01.jpg").read_bytes()
  (folder / "query" / "-1_c2s1_000001_01.jpg").write_bytes(image)  # junk in query: dropped
  split = datasets.get("market1501", market_root)
  assert len(split.query) == 6 and {r.pid for r in split.gallery} == {0, *range(100, 106)}


def test_a_folder_named_like_an_image_is_skipped(market_root):
  (market_root / "Market-1501-v15.09.15" / "query" / "0100_c2s1_000009_01.jpg").mkdir()
  assert len(datasets.get("market1501", market_root).query) == 6
