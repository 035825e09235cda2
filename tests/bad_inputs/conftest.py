"""The bad-input harness: call a command line in-process, and check it failed the way a user needs.

A bad input must end in exactly one `<prog>: error: ...` line on stderr (no
traceback) and must leave every file already written byte-identical.
`cli(module, argv)` runs a tool's `main(argv)` in this process (each `main`
parses its own flags, so calls do not leak into each other) and returns its
exit code, stdout and stderr; `snapshot(folder)` is every file's bytes digest,
compared before and after.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib
import io
import pathlib
import shutil

import pytest


@dataclasses.dataclass
class Outcome:
  code: int
  out: str
  err: str


def cli(module: str, argv: list[str]) -> Outcome:
  """`python -m <module> <argv>`, in this process."""
  main = importlib.import_module(module).main
  out, err = io.StringIO(), io.StringIO()
  code = 0
  with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
    try:
      returned = main(argv)
      code = returned if isinstance(returned, int) else 0
    except SystemExit as exit_:
      code = exit_.code if isinstance(exit_.code, int) else 1
  return Outcome(code, out.getvalue(), err.getvalue())


def error_line(outcome: Outcome, prefix: str = "jreid") -> str:
  """The one error line of a failed command (asserts it failed, with one line and no traceback)."""
  assert outcome.code != 0, f"expected a failure, got exit 0\n{outcome.out[-2000:]}"
  assert "Traceback" not in outcome.err, outcome.err[-3000:]
  errors = [line for line in outcome.err.splitlines() if line.startswith(f"{prefix}")
            and ": error:" in line]
  assert len(errors) == 1, f"expected one '{prefix}...: error:' line, stderr was:\n{outcome.err[-3000:]}"
  return errors[0]


def snapshot(folder: pathlib.Path) -> dict[str, str]:
  """Relative path -> sha256 of every file under `folder` (folders too, as '<dir>')."""
  folder = pathlib.Path(folder)
  if not folder.exists():
    return {}
  return {str(p.relative_to(folder)): ("<dir>" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest())
          for p in sorted(folder.rglob("*"))}


@pytest.fixture
def finished_run(smoke_run, tmp_path) -> pathlib.Path:
  """A private copy of the session's finished `baseline.py:smoke` workdir (tests/conftest.py)."""
  copy = tmp_path / "run"
  shutil.copytree(smoke_run, copy)
  return copy
