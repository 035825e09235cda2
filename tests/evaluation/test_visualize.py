import os
import subprocess
import sys

import numpy as np
from PIL import Image

from jreid.data import datasets
from jreid.evaluation import visualize


def _split(market_root):
  return datasets.get("market1501", market_root)


def test_rank_list_follows_the_protocol_and_colours(market_root):
  split = _split(market_root)
  query, gallery = split.query[0], split.gallery
  rng = np.random.default_rng(0)
  distances = rng.random(len(gallery))
  same_cam_same_id = [i for i, g in enumerate(gallery) if g.pid == query.pid and g.camid == query.camid]
  distances[same_cam_same_id] = -1.0  # would rank first, but the protocol removes them
  ranked = visualize.ranked_gallery(distances, query, gallery)
  expected = [i for i in np.argsort(distances, kind="stable") if i not in same_cam_same_id]
  assert ranked.tolist() == expected

  topk = 5
  image = visualize.rank_list_image(query, gallery, distances, topk=topk, size=(32, 16))
  tile_width, gap = 16 + 8, 8
  assert image.width == (topk + 1) * tile_width + gap * (topk + 1)  # the query has a double gap
  pixels = np.asarray(image)
  assert tuple(pixels[1, 1]) == visualize.QUERY_COLOUR
  for rank, index in enumerate(ranked[:topk]):
    left = tile_width + 2 * gap + rank * (tile_width + gap)
    colour = visualize.CORRECT_COLOUR if gallery[index].pid == query.pid else visualize.WRONG_COLOUR
    assert tuple(pixels[1, left + 1]) == colour, rank


def test_save_rank_lists_writes_one_png_per_query(market_root, tmp_path):
  split = _split(market_root)
  distmat = np.random.default_rng(1).random((len(split.query), len(split.gallery)))
  paths = visualize.save_rank_lists(distmat, split.query, split.gallery, tmp_path, num_queries=3, topk=4)
  assert len(paths) == 3 and all(Image.open(p).size[0] > 0 for p in paths)


def test_pair_distances_match_brute_force():
  rng = np.random.default_rng(2)
  q_pids, g_pids = rng.integers(0, 4, 7), rng.integers(0, 4, 11)
  q_cams, g_cams = rng.integers(0, 2, 7), rng.integers(0, 2, 11)
  distmat = rng.random((7, 11))
  positives, negatives = visualize.pair_distances(distmat, q_pids, g_pids, q_cams, g_cams)
  expected_pos = [distmat[i, j] for i in range(7) for j in range(11)
                  if q_pids[i] == g_pids[j] and q_cams[i] != g_cams[j]]
  expected_neg = [distmat[i, j] for i in range(7) for j in range(11) if q_pids[i] != g_pids[j]]
  assert sorted(positives) == sorted(expected_pos) and sorted(negatives) == sorted(expected_neg)


def test_plots_are_written(tmp_path):
  rng = np.random.default_rng(3)
  distmat = rng.random((6, 9))
  path = visualize.save_distance_distribution(distmat, rng.integers(0, 3, 6), rng.integers(0, 3, 9),
                                              np.zeros(6), np.ones(9), tmp_path / "dist.png")
  fpr = np.array([0.0, 1e-4, 1e-3, 1e-2, 1.0])
  roc = visualize.save_roc_curve(fpr, np.array([0.0, 0.2, 0.5, 0.8, 1.0]), tmp_path / "roc.png",
                                 marks={1e-3: 0.5})
  for p in (path, roc):
    image = np.asarray(Image.open(p).convert("RGB"))
    assert image.shape[0] > 100 and image.std() > 10  # a real picture, not a blank canvas


def test_plots_leave_the_callers_matplotlib_backend_alone(tmp_path):
  """A notebook's inline backend must survive a run that draws its PNGs (launch/colab.ipynb)."""
  script = (
      "import matplotlib, sys\n"
      "from jreid.evaluation import visualize\n"
      f"visualize.save_lifelong_curve(['a', 'b'], [10.0, 20.0], [15.0, 25.0], {str(tmp_path / 'c.png')!r}, title='t')\n"
      "print(matplotlib.get_backend(), 'matplotlib.pyplot' in sys.modules)\n")
  env = dict(os.environ, MPLBACKEND="svg")
  done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
  assert done.stdout.split() == ["svg", "False"]
  image = np.asarray(Image.open(tmp_path / "c.png").convert("RGB"))
  assert image.shape[0] > 100 and image.std() > 10
