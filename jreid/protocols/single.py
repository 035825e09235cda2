"""The single-run protocol: one run of the shared loop, trained on `data.train`, tested on `data.test`."""
from __future__ import annotations

import pathlib

from jreid.train import loop


def run(config, workdir: str | pathlib.Path) -> dict:
  return loop.train_and_evaluate(config, workdir)
