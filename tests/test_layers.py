"""Layers point one way: every import in jreid/ goes to its own layer or a lower one, without cycles.

    core  <-  data / models / losses / evaluation / convert  <-  methods  <-  train (the loop)
          <-  protocols  <-  api / main / tools

The imports are read from the source (every `import` and `from` statement,
those inside functions included), so a lazy import cannot hide an upward
dependency. A new package must be given its layer here. `jreid.config_rules`
(the vocabulary config sections declare their fields' rules in) is plain
data every layer uses, so it is core.
"""
import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1] / "jreid"
LAYERS = (
    ("core", ("jreid.errors", "jreid.config_rules", "jreid.compile_cache", "jreid.core")),
    ("parts", ("jreid.data", "jreid.models", "jreid.losses", "jreid.evaluation", "jreid.convert",
               "jreid.config_blocks")),
    ("methods", ("jreid.methods",)),
    ("loop", ("jreid.train",)),
    ("protocols", ("jreid.protocols",)),
    ("top", ("jreid.api", "jreid.main", "jreid.tools", "jreid")),
)


def module_name(path: pathlib.Path) -> str:
  parts = path.relative_to(ROOT.parent).with_suffix("").parts
  return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
  return (ROOT.parent / name.replace(".", "/") / "__init__.py").is_file()


def imported_modules(path: pathlib.Path) -> set[str]:
  return parse_imports(path.read_text(), module_name(path), is_init=path.name == "__init__.py")


def parse_imports(source: str, here: str, *, is_init: bool) -> set[str]:
  """The jreid modules `source` imports; `from pkg import name` counts `pkg.name` when it is a module."""
  found = set()
  package = here if is_init else here.rpartition(".")[0]
  for node in ast.walk(ast.parse(source)):
    if isinstance(node, ast.Import):
      found |= {alias.name for alias in node.names}
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ""
      if node.level:
        base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] +
                        ([node.module] if node.module else []))
      for alias in node.names:
        candidate = f"{base}.{alias.name}"
        found.add(candidate if is_package(candidate) or
                  (ROOT.parent / (candidate.replace(".", "/") + ".py")).is_file() else base)
  return {name for name in found if name == "jreid" or name.startswith("jreid.")}


def layer_of(name: str) -> int:
  best = None
  for index, (_, prefixes) in enumerate(LAYERS):
    for prefix in prefixes:
      if name == prefix or name.startswith(prefix + "."):
        if best is None or len(prefix) > best[1]:
          best = (index, len(prefix))
  if best is None:
    raise AssertionError(f"{name} belongs to no layer: add its package to tests/test_layers.py")
  return best[0]


def package_of(name: str) -> str:
  return ".".join(name.split(".")[:2])


MODULES = {module_name(p): imported_modules(p) for p in sorted(ROOT.rglob("*.py"))}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_import_points_up(module):
  upward = [f"{target} ({LAYERS[layer_of(target)][0]})" for target in sorted(MODULES[module])
            if layer_of(target) > layer_of(module) and not module.startswith(target + ".")
            and not (module == "jreid" and target == "jreid.train")]
  assert not upward, f"{module} ({LAYERS[layer_of(module)][0]}) imports upward: {upward}"


def test_no_package_imports_another_in_a_cycle():
  edges = {}
  for module, targets in MODULES.items():
    for target in targets:
      a, b = package_of(module), package_of(target)
      if a != b and a != "jreid" and b != "jreid":
        edges.setdefault(a, set()).add(b)

  def cycle_from(start):
    stack = [(start, [start])]
    while stack:
      node, path = stack.pop()
      for nxt in edges.get(node, ()):
        if nxt == start:
          return path + [start]
        if nxt not in path:
          stack.append((nxt, path + [nxt]))
    return None

  cycles = [c for c in (cycle_from(p) for p in sorted(edges)) if c]
  assert not cycles, f"package import cycles: {[' -> '.join(c) for c in cycles]}"


def test_the_checker_sees_lazy_and_relative_imports():
  """The parser on a hand-written module: a nested import and a relative one both count."""
  source = "import jreid.data\n\ndef f():\n  from jreid.train import loop\n\nfrom . import base\n"
  found = parse_imports(source, "jreid.methods.toy", is_init=False)
  assert found == {"jreid.data", "jreid.train.loop", "jreid.methods.base"}
  assert layer_of("jreid.train.loop") > layer_of("jreid.methods.toy")  # would be reported
