"""The vocabulary config sections use to declare their fields' types and ranges, and the checker.

A section declares a rules dict next to where it is defined (e.g.
`jreid.config_blocks.DATA_RULES` beside `data()`); a value may be a rule
or a nested dict for a sub-section (`model.backbone`). `check(config,
rules)` walks it once, before a run writes anything, and raises a
ConfigError naming the full key, the value and what is allowed:

    config.data.flip_p=2.0: expected a probability in [0, 1]

A key of the config without a rule passes (a section's own builder still
checks what it reads); a key with a rule that the config lacks is an error,
since the code reading it would fail later with a traceback. The rules are
plain data (no jax), so a config is checked in milliseconds.
"""
from __future__ import annotations

import abc
import dataclasses
import math
import numbers
from typing import Any, Mapping

from jreid.errors import ConfigError


def _number(value, low, high, open_low: bool, open_high: bool) -> str:
  """'a number in [0, 1)', 'an integer >= 1', ... without the article's noun."""
  if low is not None and high is not None:
    return f"in {'(' if open_low else '['}{low}, {high}{')' if open_high else ']'}"
  if low is not None:
    return f"{'>' if open_low else '>='} {low}"
  if high is not None:
    return f"{'<' if open_high else '<='} {high}"
  return ""


class Rule(abc.ABC):
  """What a field allows: `problem(value)` is None when it fits, else what was expected."""
  expected: str = ""

  @abc.abstractmethod
  def fits(self, value) -> bool:
    """Does `value` fit (each rule's own test)."""

  def problem(self, value) -> str | None:
    return None if self.fits(value) else f"expected {self.expected}"

  def __or__(self, other: "Rule") -> "Either":
    return Either(self, other)


@dataclasses.dataclass(frozen=True)
class Int(Rule):
  """An integer (not a bool, not a float) in a range; `odd` for kernel sides."""
  low: int | None = None
  high: int | None = None
  odd: bool = False

  @property
  def expected(self) -> str:
    bounds = _number(None, self.low, self.high, False, False)
    return f"{'an odd' if self.odd else 'an'} integer{' ' + bounds if bounds else ''}"

  def fits(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
      return False
    return ((self.low is None or value >= self.low) and (self.high is None or value <= self.high)
            and (not self.odd or value % 2 == 1))


@dataclasses.dataclass(frozen=True)
class Float(Rule):
  """A finite real number (an int is one too) in a range; NaN and infinities never fit."""
  low: float | None = None
  high: float | None = None
  open_low: bool = False
  open_high: bool = False
  noun: str = "a number"

  @property
  def expected(self) -> str:
    bounds = _number(None, self.low, self.high, self.open_low, self.open_high)
    return f"{self.noun}{' ' + bounds if bounds else ''}"

  def fits(self, value) -> bool:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
      return False
    if self.low is not None and (value <= self.low if self.open_low else value < self.low):
      return False
    return self.high is None or (value < self.high if self.open_high else value <= self.high)


def Probability() -> Float:  # noqa: N802  (reads as a type, like the others)
  return Float(0, 1, noun="a probability")


@dataclasses.dataclass(frozen=True)
class OneOf(Rule):
  """One of a fixed set of names (or numbers)."""
  choices: tuple

  def __init__(self, *choices):
    object.__setattr__(self, "choices", tuple(choices))

  @property
  def expected(self) -> str:
    return "one of " + ", ".join(repr(c) for c in self.choices)

  def fits(self, value) -> bool:
    # The same type as well as equal: `True == 1` and `1.0 == 1`, but neither is a stride of 1.
    return any(type(value) is type(c) and value == c for c in self.choices)


@dataclasses.dataclass(frozen=True)
class Bool(Rule):
  expected: str = "True or False"

  def fits(self, value) -> bool:
    return isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class Str(Rule):
  expected: str = "a string"

  def fits(self, value) -> bool:
    return isinstance(value, str)


@dataclasses.dataclass(frozen=True)
class Tuple(Rule):
  """A tuple (a list, from config.json) of `of` elements; `length` an int or the allowed lengths."""
  of: Rule
  length: int | tuple[int, ...] | None = None
  ordered: bool = False  # non-decreasing (a range's (low, high), milestones)

  @property
  def expected(self) -> str:
    lengths = (self.length,) if isinstance(self.length, int) else self.length
    count = "" if lengths is None else " or ".join(str(n) for n in lengths) + " "
    order = ", in increasing order" if self.ordered else ""
    return f"a tuple of {count}values, each {self.of.expected}{order}"

  def fits(self, value) -> bool:
    return self.problem(value) is None

  def problem(self, value) -> str | None:
    if not isinstance(value, (tuple, list)):
      return f"expected {self.expected}"
    lengths = (self.length,) if isinstance(self.length, int) else self.length
    if lengths is not None and len(value) not in lengths:
      return f"expected {self.expected}; got {len(value)} values"
    for index, element in enumerate(value):
      if not self.of.fits(element):
        return f"expected {self.expected}; element {index} is {element!r}"
    if self.ordered and any(a > b for a, b in zip(value, value[1:])):
      return f"expected {self.expected}"
    return None


@dataclasses.dataclass(frozen=True)
class Row(Rule):
  """A fixed-length tuple whose positions have their own rules, e.g. (pattern, lr_mult, wd_mult)."""
  fields: tuple

  def __init__(self, *fields: Rule):
    object.__setattr__(self, "fields", tuple(fields))

  @property
  def expected(self) -> str:
    return "(" + ", ".join(f.expected for f in self.fields) + ")"

  def fits(self, value) -> bool:
    return (isinstance(value, (tuple, list)) and len(value) == len(self.fields)
            and all(f.fits(v) for f, v in zip(self.fields, value)))


@dataclasses.dataclass(frozen=True)
class Either(Rule):
  """`a | b`: fits when either does (e.g. `OneOf(0) | Int(3, odd=True)`: off, or an odd size)."""
  first: Rule
  second: Rule

  @property
  def expected(self) -> str:
    return f"{self.first.expected} or {self.second.expected}"

  def fits(self, value) -> bool:
    return self.first.fits(value) or self.second.fits(value)


Rules = Mapping[str, Any]  # key -> Rule, or key -> Rules of a sub-section


def _is_section(value) -> bool:
  return isinstance(value, Mapping) or hasattr(value, "keys") and hasattr(value, "items")


def check(config, rules: Rules, where: str = "config") -> None:
  """Raises a ConfigError for the first field of `config` (a ConfigDict or dict) its rule refuses."""
  if not _is_section(config):
    raise ConfigError(f"{where}={config!r}: expected a section (a dict of keys)")
  for key, rule in rules.items():
    name = f"{where}.{key}"
    if key not in config:
      what = "a section" if isinstance(rule, Mapping) else rule.expected
      raise ConfigError(f"{name} is missing: expected {what}")
    value = config[key]
    if isinstance(rule, Mapping):
      check(value, rule, name)
      continue
    problem = rule.problem(value)
    if problem:
      raise ConfigError(f"{name}={value!r}: {problem}")


def _get(config, dotted: str):
  for part in dotted.split("."):
    config = config[part]
  return config


def check_multiple(config, key: str, of: str, why: str) -> None:
  """`config.<key>` must be a multiple of `config.<of>` (both already checked as positive ints)."""
  value, base = _get(config, key), _get(config, of)
  if value % base:
    raise ConfigError(f"config.{key}={value} must be a multiple of config.{of}={base} ({why})")
