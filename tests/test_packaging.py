"""Every third-party module the package imports is declared in pyproject.toml.

A dependency installed by hand on a developer's or CI's machine hides a missing declaration until a user's fresh
install fails (it happened with onnxslim), so this reads the source instead of trusting the environment.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "edgecnn"


def normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return normalized(re.split(r"[\s\[<>=!~;(]", requirement.strip(), maxsplit=1)[0])


def declared_distributions(pyproject: dict) -> set[str]:
    project = pyproject["project"]
    requirements = list(project.get("dependencies", []))
    for extra in project.get("optional-dependencies", {}).values():
        requirements += extra
    return {requirement_name(requirement) for requirement in requirements}


def optional_import_nodes(tree: ast.AST) -> set[int]:
    """Imports inside `try: … except ImportError:` are optional by construction."""
    guarded: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Try) and any(
            isinstance(handler.type, ast.Name) and handler.type.id in ("ImportError", "ModuleNotFoundError") for handler in node.handlers
        ):
            guarded |= {id(child) for statement in node.body for child in ast.walk(statement)}
    return guarded


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every absolute import in one file, lazy imports inside functions included."""
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    guarded = optional_import_nodes(tree)
    names: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in guarded:
            continue
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return {name for name in names if name not in sys.stdlib_module_names and name not in (PACKAGE, "__future__")}


def undeclared_imports(pyproject: dict) -> dict[str, str]:
    """{module: first file importing it} for every module whose distribution pyproject.toml does not name."""
    declared = declared_distributions(pyproject)
    providers = packages_distributions()
    missing: dict[str, str] = {}
    for path in sorted((REPO_ROOT / PACKAGE).rglob("*.py")):
        for module in sorted(imported_modules(path)):
            distributions = {normalized(name) for name in providers.get(module, [module])}
            if not distributions & declared:
                missing.setdefault(module, str(path.relative_to(REPO_ROOT)))
    return missing


def load_pyproject() -> dict:
    return tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def without_dependency(pyproject: dict, name: str) -> dict:
    """pyproject.toml with `name` removed from the dependencies and from every extra."""
    project = pyproject["project"]

    def kept(requirements: list[str]) -> list[str]:
        return [requirement for requirement in requirements if requirement_name(requirement) != name]

    extras = {extra: kept(requirements) for extra, requirements in project.get("optional-dependencies", {}).items()}
    assert declared_distributions(pyproject) - declared_distributions({"project": project | {"dependencies": kept(project["dependencies"]),
                                                                                           "optional-dependencies": extras}}), name
    return pyproject | {"project": project | {"dependencies": kept(project["dependencies"]), "optional-dependencies": extras}}


def test_every_import_is_declared():
    missing = undeclared_imports(load_pyproject())
    assert not missing, "imported but not declared in pyproject.toml: " + "; ".join(f"{module} ({where})" for module, where in missing.items())


@pytest.mark.parametrize(
    "distribution, module, where",
    [("onnxslim", "onnxslim", "edgecnn/core/onnx_graph.py"), ("protobuf", "google", "edgecnn/core/onnx_graph.py"),
     ("typer", "typer", "edgecnn/cli/__init__.py"), ("tensorflow", "tensorflow", "edgecnn/core/backend.py")],
)
def test_a_removed_dependency_is_named_with_the_file_importing_it(distribution, module, where):
    assert undeclared_imports(without_dependency(load_pyproject(), distribution)) == {module: where}


def test_the_device_install_is_the_plain_dependencies_and_the_training_side_an_extra():
    project = load_pyproject()["project"]
    plain = {requirement_name(requirement) for requirement in project["dependencies"]}
    training = {requirement_name(requirement) for requirement in project["optional-dependencies"]["train"]}
    assert {"tensorflow", "keras", "tf2onnx", "onnxslim", "matplotlib", "scipy", "scikit-learn", "mlxtend"} <= training
    assert not plain & training and {"onnxruntime-gpu", "ai-edge-litert", "numpy", "pillow", "typer"} <= plain
    quick_start = (REPO_ROOT / "README.md").read_text(encoding="utf-8").split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert 'pip install -e ".[train]" && edgecnn pipeline' in quick_start


def test_a_plain_install_ships_every_module_and_the_schema():
    """`pip install .` (not editable) installs the packages setuptools finds and the package data pyproject names: a
    folder without `__init__.py` would be left out of a device install, and the schema with it."""
    from setuptools import find_packages

    root = REPO_ROOT
    folders = {".".join(path.parent.relative_to(root).parts) for path in (root / "edgecnn").rglob("*.py") if "__pycache__" not in path.parts}
    assert folders <= set(find_packages(str(root), include=["edgecnn*"]))
    package_data = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["edgecnn"]
    assert "manifest.schema.json" in package_data and (root / "edgecnn" / "manifest.schema.json").is_file()
