"""The package layering of docs/architecture.md ("Layers"), checked on every test run.

KNOWN_VIOLATIONS and KNOWN_LONG_MODULES list what main breaks today; the tests check them exactly,
so a new violation fails and a fixed one must be struck from the list (which only ever shrinks).
"""

from __future__ import annotations

import functools
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

_spec = importlib.util.spec_from_file_location("check_layers", Path(__file__).resolve().parents[1] / "scripts" / "check_layers.py")
assert _spec and _spec.loader
layers = importlib.util.module_from_spec(_spec)
sys.modules["check_layers"] = layers  # dataclasses look their module up while the class is built
_spec.loader.exec_module(layers)

#: "importer -> imported" for imports of a higher layer, "cycle: a, b, c" for packages in a cycle.
#: Main had these before issue 20's branches landed (each went away with its branch): config ->
#: engine.optimizations, engine.schedulers, suites, suites.executors; quality.pareto ->
#: store.compare; cycle: config, engine, suites.
KNOWN_VIOLATIONS: set[str] = set()

#: Modules (relative to src/diffprof) over the 400-line limit. Before issue 20: config.py,
#: engine/engine.py, engine/optimizations.py, report/plots.py, store/compare.py, store/store.py,
#: suites/measure.py.
KNOWN_LONG_MODULES: set[str] = set()


@functools.cache
def repo_imports() -> tuple[Any, ...]:
    """src/diffprof's imports, read once for the tests below (parsing every module takes seconds)."""
    return tuple(layers.imports())


def violations(root: Path = layers.ROOT) -> set[str]:
    found = list(repo_imports()) if root == layers.ROOT else layers.imports(root)
    return {f"{i.source or 'diffprof'} -> {i.target or 'diffprof'}" for i in layers.upward(found)} | {
        "cycle: " + ", ".join(group) for group in layers.package_cycles(found)}


def test_every_package_has_a_layer() -> None:
    assert layers.unmapped() == set(), "place the new package in scripts/check_layers.py LAYERS"


def test_imports_go_only_to_the_same_or_a_lower_layer_and_packages_form_no_cycle() -> None:
    found = violations()
    assert found - KNOWN_VIOLATIONS == set(), "new upward imports or cycles (see `python scripts/check_layers.py`)"
    assert KNOWN_VIOLATIONS - found == set(), "fixed: strike these from KNOWN_VIOLATIONS"


def test_config_imports_nothing_above_layer_1() -> None:
    """The schema (``config``, a module or a package) reaches only layers 0 and 1 outside itself."""
    above = {f"{i.source} -> {i.target}" for i in repo_imports()
             if i.source_package == "config" != i.target_package and layers.LAYERS.get(i.target_package, 99) > 1}
    assert above == {v for v in KNOWN_VIOLATIONS if v.startswith("config")}


def test_no_module_is_over_400_lines() -> None:
    long = set(layers.long_modules())
    assert long - KNOWN_LONG_MODULES == set(), "split these modules (400 lines at most)"
    assert KNOWN_LONG_MODULES - long == set(), "now short enough: strike these from KNOWN_LONG_MODULES"


def _tree(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "diffprof"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


@pytest.mark.parametrize("code, target, where", [
    ("from diffprof.engine import Engine\n", "engine", "module"),
    ("def f():\n    from diffprof.engine.run import go\n", "engine.run", "function"),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import diffprof.engine\n", "engine", "type-checking"),
    ("class C:\n    def m(self):\n        from ..engine import run\n", "engine.run", "function"),
])
def test_the_checker_sees_module_function_type_checking_and_relative_imports(tmp_path: Path, code: str, target: str,
                                                                               where: str) -> None:
    root = _tree(tmp_path, {"engine/__init__.py": "", "engine/run.py": "import diffprof.config\n", "config/__init__.py": "",
                            "config/schema.py": code})
    found = layers.imports(root)
    assert [(i.source, i.target, i.where) for i in found if i.source_package == "config"] == [("config.schema", target, where)]
    assert violations(root) == {f"config.schema -> {target}", "cycle: config, engine"}


def test_the_checker_allows_downward_and_same_package_imports(tmp_path: Path) -> None:
    root = _tree(tmp_path, {"errors.py": "", "engine/__init__.py": "from diffprof.engine.run import go\n",
                            "engine/run.py": "from diffprof import errors\nfrom . import helpers\n", "engine/helpers.py": "",
                            "cli.py": "from diffprof.engine import go\n"})
    assert violations(root) == set()
    assert {(i.source, i.target) for i in layers.imports(root)} == {
        ("engine", "engine.run"), ("engine.run", "errors"), ("engine.run", "engine.helpers"), ("cli", "engine")}
