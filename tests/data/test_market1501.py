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
