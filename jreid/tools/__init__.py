"""Command-line tools (`python -m jreid.tools.<name>`); `int_at_least` is their argparse type for counts."""
from __future__ import annotations

import argparse


def int_at_least(minimum: int):
  """An argparse `type`: an integer >= `minimum`, else argparse's one-line `error: argument --x: ...`."""
  def parse(text: str) -> int:
    try:
      value = int(text)
    except ValueError:
      raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {text!r}") from None
    if value < minimum:
      raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
    return value
  parse.__name__ = f"integer >= {minimum}"
  return parse
