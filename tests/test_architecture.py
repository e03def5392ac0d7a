"""The layers contract in pyproject.toml covers the whole package: every module of the installed
`tinyasr` lies in exactly one layer, so `lint-imports` (run by `make lint`) checks every import;
the packages outside the layers (the namespace roots) hold no code."""

from __future__ import annotations

import ast
import importlib.util
import pkgutil
from pathlib import Path

import tomllib

import tinyasr

ROOT = Path(__file__).resolve().parent.parent
CONTAINERS = {"tinyasr", "tinyasr.model", "tinyasr.targets"}   # namespace roots, no layer


def _layers() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c["type"] == "layers"]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def _modules() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    packages = config["tool"]["setuptools"]["packages"]
    names = set(packages)
    for package in packages:
        spec = importlib.util.find_spec(package)
        assert spec is not None and spec.submodule_search_locations, package
        names.update(f"{package}.{info.name}" for info in
                     pkgutil.iter_modules(spec.submodule_search_locations) if not info.ispkg)
    return sorted(names)


def test_every_module_lies_in_one_layer():
    layers = _layers()
    outside = []
    for module in _modules():
        if module in CONTAINERS:
            continue
        owners = [layer for layer in layers
                  if module == layer or module.startswith(layer + ".")]
        if len(owners) != 1:
            outside.append((module, owners))
    assert not outside, f"modules in no layer or in two: {outside}"


def test_namespace_roots_hold_no_code():
    """The root packages outside the layers are docstrings only (the API root is lazy names)."""
    for name in CONTAINERS - {"tinyasr"}:
        spec = importlib.util.find_spec(name)
        assert spec is not None and spec.origin
        body = ast.parse(Path(spec.origin).read_text()).body
        assert all(isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
                   for node in body), name
    assert tinyasr.__name__ == "tinyasr"
