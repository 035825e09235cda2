"""CFS scores, the kept count, ranked lists, and `data.train_subset` through the loop's data loading."""
import numpy as np
import pytest

from jreid import config_blocks
from jreid.data import subsets
from jreid.data.records import Record
from jreid.errors import ConfigError, DatasetLayoutError
from jreid.train import loop


def test_cfs_is_the_per_image_cosine_of_the_two_proxies():
  rng = np.random.default_rng(0)
  source, target = rng.normal(size=(6, 4)), rng.normal(size=(6, 4))
  expected = [np.dot(s, t) / np.linalg.norm(s) / np.linalg.norm(t) for s, t in zip(source, target)]
  np.testing.assert_allclose(subsets.cfs_scores(source, target), expected, rtol=1e-12)
  np.testing.assert_allclose(subsets.cfs_scores(source, 3 * source), 1.0)
  with pytest.raises(ConfigError, match=r"two \(N, D\) feature sets of one shape"):
    subsets.cfs_scores(source, target[:5])


def test_kept_counts_are_the_papers_figures():
  assert subsets.kept_count(4_180_243, 0.5) == 2_090_122  # the paper's 50% of LUPerson
  assert subsets.kept_count(4_180_243, 0.6) == 2_508_146  # the authors' scripts' 60%
  assert subsets.kept_count(3, 1.0) == 3 and subsets.kept_count(5, 0.5) == 3  # halves round up
  with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
    subsets.kept_count(10, 0.0)


def test_ranking_keeps_the_most_similar_first_and_exposes_the_order():
  scores = np.array([0.2, 0.9, 0.5, 0.9])
  assert list(subsets.ranking(scores)) == [1, 3, 2, 0]  # ties in pool order
  assert list(subsets.ranking(scores, "lowest")) == [0, 2, 1, 3]
  with pytest.raises(ConfigError, match="order='middle'"):
    subsets.ranking(scores, "middle")


def _records(root, count):
  return [Record(str(root / "pool" / f"{i:03d}.jpg"), i, 0) for i in range(count)]


def test_a_written_ranked_list_reads_back_its_head(tmp_path):
  records = _records(tmp_path, 5)
  path = subsets.write_ranked_list(tmp_path / "cfs.txt", records, np.array([.1, .5, .3, .9, .2]),
                                   tmp_path)
  assert path.read_text().splitlines()[0] == "pool/003.jpg\t0.90000000"
  assert subsets.read_list(path) == ["pool/003.jpg", "pool/001.jpg", "pool/002.jpg",
                                     "pool/004.jpg", "pool/000.jpg"]
  assert subsets.read_list(path, 0.5) == ["pool/003.jpg", "pool/001.jpg", "pool/002.jpg"]
  kept = subsets.keep_listed(records, subsets.read_list(path, 0.4), tmp_path, str(path))
  assert [r.pid for r in kept] == [1, 3]  # the training order, not the ranking
  with pytest.raises(DatasetLayoutError, match=r"1 of its 2 images are not in the training set.*"
                                               r"'pool/999.jpg'"):
    subsets.keep_listed(records, ["pool/001.jpg", "pool/999.jpg"], tmp_path, "list.txt")
  with pytest.raises(DatasetLayoutError, match="no subset list at"):
    subsets.read_list(tmp_path / "missing.txt")


def test_data_train_subset_keeps_only_the_listed_training_images(market_root, tmp_path):
  config = config_blocks.run(method="supervised")
  config.data = config_blocks.data(train="market1501", test="market1501", root=str(market_root),
                                   height=32, width=16)
  everything = loop.load_data(config).train
  chosen = sorted({r.path for r in everything})[::3]
  listing = tmp_path / "subset.txt"
  listing.write_text("".join(f"{subsets.relative_to_root(p, market_root)}\n" for p in chosen))
  config.data.train_subset = str(listing)
  subset = loop.load_data(config)
  assert sorted(r.path for r in subset.train) == chosen
  assert sorted({r.pid for r in subset.train}) == list(range(subset.num_classes))  # relabelled
