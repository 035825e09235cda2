"""Pytree partitions by path pattern: select / exclude / merge round trips."""
import numpy as np

from jreid.core import partition

TREE = {"backbone": {"conv1": {"kernel": np.ones((3, 3, 3, 4)), "sa": {"kernel": np.zeros((5, 5, 4))}},
                     "bn1": {"scale": np.ones(4), "bias": np.zeros(4)}},
        "head": {"classifier": {"kernel": np.ones((4, 7))}}}


def test_select_and_exclude_split_by_whole_path():
  norms = partition.select(TREE, r".*/(scale|bias)")
  assert partition.paths(norms) == ["backbone/bn1/bias", "backbone/bn1/scale"]
  rest = partition.exclude(TREE, r".*/(scale|bias)")
  assert partition.paths(rest) == ["backbone/conv1/kernel", "backbone/conv1/sa/kernel",
                                    "head/classifier/kernel"]
  # fullmatch: "kernel" alone matches no path
  assert partition.select(TREE, "kernel") == {}
  assert partition.select(TREE, "") == {}


def test_merge_restores_the_tree_and_later_trees_win():
  pattern = r".*/sa/kernel|head/.*"
  back = partition.merge(partition.exclude(TREE, pattern), partition.select(TREE, pattern))
  assert partition.paths(back) == partition.paths(TREE)
  replaced = partition.merge(TREE, {"head": {"classifier": {"kernel": np.zeros((4, 7))}}})
  assert float(replaced["head"]["classifier"]["kernel"].sum()) == 0
  assert replaced["backbone"]["conv1"]["kernel"] is TREE["backbone"]["conv1"]["kernel"]


def test_nbytes_counts_array_data():
  expected = 4 * (3 * 3 * 3 * 4 + 5 * 5 * 4 + 4 + 4 + 4 * 7) * 2  # float64
  assert partition.nbytes(TREE) == expected
