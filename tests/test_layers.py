"""The package reads top-down: the CLI and the pipeline, then report/, then stages/, then measure/, then runners/, then core/. No
module imports a higher layer (not even lazily or for type hints), and no import cycle exists between modules."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "edgecnn"
LAYERS = ("core", "runners", "measure", "stages", "report", "top")  # low → high


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def layer(module: str) -> str:
    parts = module.split(".")
    if module == "edgecnn":  # the package's own __init__: its version, nothing else
        return "core"
    return parts[1] if parts[1] in LAYERS else "top"


def type_checking_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports(module: str, runtime_only: bool) -> set[str]:
    """Every edgecnn module `module` imports, at the top or inside a function (`runtime_only`: not the type-only ones)."""
    tree = ast.parse(MODULES[module].read_text())
    skipped = type_checking_lines(tree) if runtime_only else set()
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skipped:
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("edgecnn"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("edgecnn"):
            for alias in node.names:  # `from edgecnn.stages import bench` imports the module edgecnn.stages.bench
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if submodule in MODULES else node.module)
    return {name for name in found if name in MODULES and name != module}


def test_every_module_is_in_a_layer():
    assert {layer(module) for module in MODULES} == set(LAYERS)


def test_no_module_imports_a_higher_layer():
    upward = sorted(
        f"{module} ({layer(module)}) imports {target} ({layer(target)})"
        for module in MODULES
        for target in imports(module, runtime_only=False)
        if LAYERS.index(layer(target)) > LAYERS.index(layer(module))
    )
    assert upward == []


def test_no_import_cycles():
    graph = {module: imports(module, runtime_only=True) for module in MODULES}
    cycles = []
    state: dict[str, str] = {}

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                cycles.append(" → ".join(path[path.index(target):] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_the_checks_see_lazy_imports():
    """bench imports tune inside a function: the graph must contain that edge, or the checks above prove nothing."""
    assert "edgecnn.stages.tune" in imports("edgecnn.stages.bench", runtime_only=True)


def test_only_the_artifact_table_names_a_file_format():
    """Format-specific code lives with each format (its converter module, its runtimes' runners): stages, report, CLI
    and pipeline ask them, never `ArtifactFormat.ONNX`/`TFLITE` themselves, except the one format table."""
    table = PACKAGE / "stages" / "export" / "artifacts.py"
    naming = sorted(
        str(path.relative_to(PACKAGE)) for path in PACKAGE.rglob("*.py")
        if layer(module_name(path)) in ("stages", "report", "top") and path != table
        and any(name in path.read_text() for name in ("ArtifactFormat.ONNX", "ArtifactFormat.TFLITE"))
    )
    assert naming == []
