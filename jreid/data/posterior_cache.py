"""The frozen VAE's posterior of every training image, computed once and read by the input pipeline.

DCAC feeds its diffusion branch the raw training image, resized to a square
(128 x 128, bicubic) in [-1, 1], never augmented, through a frozen VAE; the
latent is a sample of the posterior N(mean, exp(logvar)). Since neither the
image nor the VAE changes during training, the posterior (mean, logvar) of
each image is the same at every step: computing it once and sampling it per
step is exact, and takes the VAE out of the training step. The cache is a
file per (records, VAE, size), named by a digest of all three, so changing
the data (a file's path, size or modification time) or the VAE weights
selects another file instead of reading a stale one.
"""
from __future__ import annotations

import hashlib
import json
import os
import pathlib
from typing import Callable, Sequence

import numpy as np
from PIL import Image

from jreid.data import transforms
from jreid.data.records import Record

# (B, S, S, 3) images in [-1, 1] -> the posterior's mean and logvar, each (B, ...) in one layout.
Encode = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def vae_input(image: np.ndarray, size: int) -> np.ndarray:
  """A decoded uint8 image as the VAE reads it: size x size bicubic (PIL), float32 in [-1, 1]."""
  if image.shape[:2] != (size, size):
    image = np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))
  return image.astype(np.float32) / 127.5 - 1.0


def digest(records: Sequence[Record], vae_digest: str, size: int) -> str:
  """Names the cache: every image's path, byte size and mtime (a stored image: where its build
  keeps it, `stored.fingerprint`), the VAE's identity and the size."""
  h = hashlib.sha1(f"{vae_digest}|{size}|{len(records)}".encode())
  for record in records:
    if record.stored is not None:
      h.update(f"|{record.path}:{record.stored.fingerprint}".encode())
      continue
    stat = os.stat(record.path)
    h.update(f"|{record.path}:{stat.st_size}:{stat.st_mtime_ns}".encode())
  return h.hexdigest()[:16]


def ensure(records: Sequence[Record], *, encode: Encode, vae_digest: str, size: int,
           folder: str | os.PathLike, batch_size: int = 64,
           log: Callable[[str], None] = print) -> np.ndarray:
  """(N, 2, ...) float32 [mean, logvar] per record, in order (the encoder's layout); computed unless cached.

  The file is written under a temporary name and renamed, so a run killed
  while encoding leaves no partial cache behind.
  """
  folder = pathlib.Path(folder).expanduser()
  name = digest(records, vae_digest, size)
  path = folder / f"{name}.npy"
  if path.is_file():
    cached = np.load(path, mmap_mode="r")
    if cached.shape[0] == len(records):
      return cached
    log(f"VAE posterior cache {path} holds {cached.shape[0]} rows, not {len(records)}: recomputing")
  folder.mkdir(parents=True, exist_ok=True)
  log(f"encoding {len(records)} training images with the frozen VAE at {size}x{size} "
      f"(once; cached in {path})")
  rows = []
  for start in range(0, len(records), batch_size):
    chunk = records[start:start + batch_size]
    images = np.stack([vae_input(transforms.decode_record(r), size) for r in chunk])
    pad = batch_size - len(chunk)  # one batch shape: one compilation
    if pad:
      images = np.concatenate([images, np.zeros((pad, *images.shape[1:]), images.dtype)])
    mean, logvar = encode(images)
    rows.append(np.stack([np.asarray(mean), np.asarray(logvar)], axis=1)[:len(chunk)])
  table = np.concatenate(rows).astype(np.float32)
  partial = folder / f"{name}.partial.npy"
  np.save(partial, table)
  os.replace(partial, path)
  (folder / f"{name}.json").write_text(json.dumps(
      {"images": len(records), "vae": vae_digest, "size": size, "shape": list(table.shape)}))
  return np.load(path, mmap_mode="r")
