import dataclasses

import numpy as np
import pytest
from PIL import Image, ImageEnhance

from jreid.data import augment, datasets, pipeline, transforms
from jreid.data.records import relabel


def _image(h=24, w=12, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _state(rng):
  return rng.bit_generator.state


OPS = {
    "random_resized_crop": lambda x, rng: augment.random_resized_crop(x, rng, (16, 8)),
    "color_jitter": lambda x, rng: augment.color_jitter(x, rng, 0.4, 0.4, 0.4, 0.1, p=1.0),
    "gaussian_blur": lambda x, rng: augment.gaussian_blur(x, rng, 1.0, kernel_size=5),
    "cutout": lambda x, rng: augment.cutout(x, rng, 1.0, 6),
    "random_patch": lambda x, rng: augment.random_patch(x, rng, 1.0, [_image(seed=9)]),
    "auto_augment": lambda x, rng: augment.auto_augment(x, rng, 1.0),
}


@pytest.mark.parametrize("name", sorted(OPS))
def test_same_seed_same_output_other_seeds_differ(name):
  op, image = OPS[name], _image()
  out = op(image, np.random.default_rng(5))
  assert out.dtype == np.uint8 and out.shape[-1] == 3
  assert np.array_equal(out, op(image, np.random.default_rng(5)))
  # Some ops (AutoAugment's coins) may leave an image alone for one seed, never for all.
  assert any(not np.array_equal(out, op(image, np.random.default_rng(s))) for s in range(6, 12))


@pytest.mark.parametrize("call", [
    lambda x, rng: augment.color_jitter(x, rng, 0.4, 0.4, 0.4, 0.1, p=0.0),
    lambda x, rng: augment.random_grayscale(x, rng, 0.0),
    lambda x, rng: augment.gaussian_blur(x, rng, 0.0),
    lambda x, rng: augment.cutout(x, rng, 0.0, 6),
    lambda x, rng: augment.random_patch(x, rng, 0.0, [_image(seed=9)]),
    lambda x, rng: augment.auto_augment(x, rng, 0.0),
])
def test_probability_zero_is_identity_and_draws_nothing(call):
  image, rng = _image(), np.random.default_rng(3)
  before = _state(rng)
  assert call(image, rng) is image
  assert _state(rng) == before


def test_grayscale_is_itu_601_luma():
  image = _image(6, 5)
  out = augment.random_grayscale(image, np.random.default_rng(0), 1.0)
  luma = image.astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  assert out.shape == image.shape
  assert (out == out[..., :1]).all()
  assert np.abs(out[..., 0] - luma).max() <= 0.5 + 1e-3


def test_cutout_zeroes_the_replayed_box_clipped_at_borders():
  image = np.full((10, 8, 3), 200, np.uint8)
  for seed in range(20):  # some centres land near a border
    out = augment.cutout(image, np.random.default_rng(seed), 1.0, 5)
    rng = np.random.default_rng(seed)
    cy, cx = rng.integers(0, 10), rng.integers(0, 8)
    rows, cols = np.arange(10)[:, None], np.arange(8)[None, :]
    inside = (abs(rows - cy) <= 2) & (abs(cols - cx) <= 2)
    assert np.array_equal(out[..., 0] == 0, inside)
    assert (out[~inside] == 200).all()


def test_random_resized_crop_of_the_whole_image_is_a_plain_resize():
  image = _image(24, 12)
  out = augment.random_resized_crop(image, np.random.default_rng(0), (40, 20),
                                    scale=(1.0, 1.0), ratio=(0.5, 0.5))
  assert np.array_equal(out, transforms.resize(image, (40, 20)))


def test_random_resized_crop_is_a_resized_window_of_the_replayed_box():
  image = _image(30, 20)
  out = augment.random_resized_crop(image, np.random.default_rng(4), (16, 8), scale=(0.3, 0.6))
  rng = np.random.default_rng(4)
  while True:  # the same draws as torchvision's get_params
    area = 600 * rng.uniform(0.3, 0.6)
    aspect = np.exp(rng.uniform(np.log(3 / 4), np.log(4 / 3)))
    w, h = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
    if w <= 20 and h <= 30:
      break
  top, left = rng.integers(0, 31 - h), rng.integers(0, 21 - w)
  window = Image.fromarray(np.ascontiguousarray(image[top:top + h, left:left + w]))
  assert np.array_equal(out, np.asarray(window.resize((8, 16), Image.BILINEAR)))


def test_random_resized_crop_falls_back_to_a_centre_crop_in_the_ratio_range():
  # A box of 4x the area never fits, so the fallback crops the centre at aspect 1.
  image = _image(30, 10)
  out = augment.random_resized_crop(image, np.random.default_rng(0), (10, 10),
                                    scale=(4.0, 4.0), ratio=(1.0, 1.0))
  assert np.array_equal(out, image[10:20])


def test_color_jitter_zero_is_identity_and_brightness_matches_pil():
  image = _image()
  assert np.array_equal(augment.color_jitter(image, np.random.default_rng(0)), image)
  out = augment.color_jitter(image, np.random.default_rng(1), brightness=0.5)
  rng = np.random.default_rng(1)
  rng.permutation(4)
  factor = rng.uniform(0.5, 1.5)
  expected = ImageEnhance.Brightness(Image.fromarray(image)).enhance(factor)
  assert np.array_equal(out, np.asarray(expected))


def test_hue_shift_of_half_a_turn_twice_is_identity_in_hsv():
  # Hue is a byte in PIL's HSV: +0.5 twice (127 + 127 = 254 of 256) almost returns.
  image = _image()
  hsv = np.asarray(Image.fromarray(image).convert("HSV")).astype(int)
  shifted = np.asarray(augment._adjust_hue(Image.fromarray(image), 0.5).convert("HSV")).astype(int)
  assert np.abs((shifted[..., 0] - hsv[..., 0]) % 256 - 127).max() <= 3


def test_blur_equals_brute_force_2d_convolution_with_reflect_padding():
  image = _image(9, 7)
  out = augment.gaussian_blur(image, np.random.default_rng(2), 1.0, sigma=(0.5, 1.5),
                              kernel_size=5)
  sigma = np.random.default_rng(2).uniform(0.5, 1.5)
  offsets = np.arange(-2, 3)
  weights = np.exp(-(offsets[:, None] ** 2 + offsets[None, :] ** 2) / (2 * sigma ** 2))
  weights /= weights.sum()

  def reflect(i, n):  # numpy/torch "reflect": the edge pixel is not repeated
    return -i if i < 0 else 2 * (n - 1) - i if i >= n else i

  expected = np.zeros(image.shape)
  for y in range(9):
    for x in range(7):
      for dy in offsets:
        for dx in offsets:
          expected[y, x] += weights[dy + 2, dx + 2] * image[reflect(y + dy, 9), reflect(x + dx, 7)]
  assert np.array_equal(out, np.round(expected))
  with pytest.raises(ValueError, match="odd"):
    augment.gaussian_blur(image, np.random.default_rng(0), 1.0, kernel_size=4)


def test_random_patch_pastes_a_replayed_window_of_a_donor():
  image, donor = np.zeros((24, 12, 3), np.uint8), _image(24, 12, seed=7)
  pool = [np.zeros_like(donor), donor]
  for seed in range(10):
    out = augment.random_patch(image, np.random.default_rng(seed), 1.0, pool, flip_p=0.0)
    rng = np.random.default_rng(seed)
    chosen = pool[rng.integers(2)]
    while True:
      area = rng.uniform(0.01, 0.5) * 24 * 12
      aspect = rng.uniform(0.1, 10)
      h, w = int(round(np.sqrt(area * aspect))), int(round(np.sqrt(area / aspect)))
      if 0 < h < 24 and 0 < w < 12:
        break
    top, left = rng.integers(0, 25 - h), rng.integers(0, 13 - w)
    y, x = rng.integers(0, 25 - h), rng.integers(0, 13 - w)
    expected = image.copy()
    expected[y:y + h, x:x + w] = chosen[top:top + h, left:left + w]
    assert np.array_equal(out, expected)
  assert augment.random_patch(image, np.random.default_rng(0), 1.0, []) is image


def test_random_patch_flip_mirrors_the_patch():
  image, donor = np.zeros((24, 12, 3), np.uint8), _image(24, 12, seed=7)
  plain = augment.random_patch(image, np.random.default_rng(3), 1.0, [donor], flip_p=0.0)
  flipped = augment.random_patch(image, np.random.default_rng(3), 1.0, [donor], flip_p=1.0)
  rows, cols = np.nonzero(np.any(plain != flipped, axis=-1) | np.any(plain != 0, axis=-1))
  box = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
  assert np.array_equal(flipped[box], plain[box][:, ::-1])


def test_autoaugment_policy_table_is_the_imagenet_one():
  assert len(augment.IMAGENET_POLICY) == 25
  assert all(len(sub) == 2 for sub in augment.IMAGENET_POLICY)
  for op, prob, level in (pair for sub in augment.IMAGENET_POLICY for pair in sub):
    assert 0.0 <= prob <= 1.0 and (level is None or 0 <= level <= 9)
    augment.apply_op(_image(), op, augment.magnitude(op, level, 24, 12))  # every op is known
  ops = {op for sub in augment.IMAGENET_POLICY for op, _, _ in sub}
  assert ops == {"Posterize", "Rotate", "Solarize", "AutoContrast", "Equalize", "Color",
                 "Contrast", "Invert", "Sharpness", "ShearX"}


def test_autoaugment_magnitudes_follow_torchvision_imagenet_ranges():
  # torchvision: 10 bins from 0 to the maximum; Posterize 8 -> 4 bits; Solarize 255 -> 0.
  assert augment.magnitude("Rotate", 9, 24, 12) == pytest.approx(30.0)
  assert augment.magnitude("ShearX", 3, 24, 12) == pytest.approx(0.1)
  assert augment.magnitude("TranslateX", 9, 331, 331) == pytest.approx(150.0)
  assert augment.magnitude("TranslateY", 9, 662, 10) == pytest.approx(300.0)
  assert augment.magnitude("Color", 9, 24, 12) == pytest.approx(0.9)
  assert [augment.magnitude("Posterize", i, 1, 1) for i in range(10)] == \
      [8, 8, 7, 7, 6, 6, 5, 5, 4, 4]
  assert augment.magnitude("Solarize", 0, 1, 1) == 255.0
  assert augment.magnitude("Solarize", 9, 1, 1) == 0.0
  assert augment.magnitude("Equalize", None, 1, 1) == 0.0


def test_autoaugment_ops_match_hand_built_references():
  image = _image()
  assert np.array_equal(augment.apply_op(image, "Invert", 0), 255 - image)
  assert np.array_equal(augment.apply_op(image, "Posterize", 3), image & 0b11100000)
  assert np.array_equal(augment.apply_op(image, "Solarize", 100.0),
                        np.where(image >= 100, 255 - image, image))
  assert np.array_equal(augment.apply_op(image, "Brightness", -1.0), np.zeros_like(image))
  gray = np.asarray(Image.fromarray(image).convert("L"))
  assert np.array_equal(augment.apply_op(image, "Color", -1.0), np.repeat(gray[..., None], 3, -1))
  shifted = np.zeros_like(image)
  shifted[:, 3:] = image[:, :-3]
  assert np.array_equal(augment.apply_op(image, "TranslateX", 3.7), shifted)
  down = np.zeros_like(image)
  down[:-2] = image[2:]
  assert np.array_equal(augment.apply_op(image, "TranslateY", -2.0), down)
  square = _image(8, 8)
  assert np.array_equal(augment.apply_op(square, "Rotate", 90.0), np.rot90(square))
  assert np.array_equal(augment.apply_op(image, "ShearX", 0.0), image)
  # ShearX by m: the output pixel centre (x + .5, y + .5) samples the input point
  # (x + .5 + m (y + .5), y + .5), nearest neighbour: row y shifts left by floor(.5 + m (y + .5)).
  sheared = augment.apply_op(square, "ShearX", 0.5)
  for y in range(8):
    shift = int(np.floor(0.5 + 0.5 * (y + 0.5)))
    assert np.array_equal(sheared[y, :8 - shift], square[y, shift:])
    assert (sheared[y, 8 - shift:] == 0).all()


def test_autoaugment_replays_policy_coins_and_signs():
  image = _image()
  for seed in range(8):
    out = augment.auto_augment(image, np.random.default_rng(seed), 1.0)
    rng = np.random.default_rng(seed)
    policy = augment.IMAGENET_POLICY[rng.integers(25)]
    coins, signs = rng.random(2), rng.integers(0, 2, size=2)
    expected = image
    for (op, prob, level), coin, sign in zip(policy, coins, signs):
      if coin <= prob:
        value = augment.magnitude(op, level, 24, 12)
        expected = augment.apply_op(expected, op, -value if sign == 0 else value)
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert np.array_equal(out, expected)


# --- the pipeline ---------------------------------------------------------------------------


OPTIONS = pipeline.ImageOptions(height=32, width=16)


def test_load_train_with_new_options_off_is_the_original_sequence(market_root):
  records = datasets.get("market1501", market_root).train
  for position, record in enumerate(records[:4]):
    out = pipeline.load_train(record, OPTIONS, np.random.default_rng([3, position]), records[:2])
    rng = np.random.default_rng([3, position])
    image = transforms.resize(transforms.decode(record.path), (32, 16))
    image = transforms.random_flip(image, rng, 0.5)
    image = transforms.pad_crop(image, rng, 10)
    image = transforms.random_erase(image, rng, 0.5)
    assert np.array_equal(out, transforms.normalize(image))


@pytest.mark.parametrize("change", [
    dict(autoaug_p=1.0), dict(rrc_scale=(0.3, 1.0)), dict(color_jitter_p=1.0),
    dict(grayscale_p=1.0), dict(blur_p=1.0), dict(cutout_p=1.0, cutout_size=8),
    dict(random_patch_p=1.0)])
def test_an_enabled_option_changes_load_train_deterministically(market_root, change):
  records = datasets.get("market1501", market_root).train
  options = dataclasses.replace(OPTIONS, erase_p=0.0, **change)
  load = lambda opts, seed: pipeline.load_train(
      records[0], opts, np.random.default_rng([seed, 7]), records[1:3])
  changed = [load(options, seed) for seed in range(4)]
  assert all(np.array_equal(c, load(options, seed)) for seed, c in enumerate(changed))
  plain = dataclasses.replace(OPTIONS, erase_p=0.0)
  assert any(not np.array_equal(c, load(plain, seed)) for seed, c in enumerate(changed))


def test_from_config_reads_every_option():
  from jreid import config_blocks
  config = config_blocks.data(train="a", test="b", root="/r", height=32, width=16)
  assert pipeline.ImageOptions.from_config(config) == OPTIONS
  config.cutout_p, config.rrc_scale = 0.5, (0.2, 1.0)
  options = pipeline.ImageOptions.from_config(config)
  assert options.cutout_p == 0.5 and options.rrc_scale == (0.2, 1.0)


def test_random_patch_stream_is_deterministic_across_runs_and_hosts(market_root):
  records = relabel(datasets.get("market1501", market_root).train)
  plain = dataclasses.replace(OPTIONS, erase_p=0.0)
  options = dataclasses.replace(plain, random_patch_p=1.0, random_patch_pool=8)
  args = dict(batch_size=8, num_instances=2, num_steps=2, seed=3)
  first = list(pipeline.train_dataset(records, options=options, **args))
  again = list(pipeline.train_dataset(records, options=options, num_threads=1, **args))
  halves = [list(pipeline.train_dataset(records, options=options, host=h, num_hosts=2, **args))
            for h in range(2)]
  without = list(pipeline.train_dataset(records, options=plain, **args))
  for step, batch in enumerate(first):
    assert np.array_equal(batch["image"], again[step]["image"])
    joined = np.concatenate([halves[0][step]["image"], halves[1][step]["image"]])
    assert np.array_equal(joined, batch["image"])
  # Position 0 has no earlier images to cut from; later ones get a patch.
  assert np.array_equal(first[0]["image"][0], without[0]["image"][0])
  assert not np.array_equal(first[1]["image"], without[1]["image"])
