"""The package's layers import only downward (README, "Code layout")."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "latentworld"
LAYERS = ["common", "probability", "models", "experiment", "evaluation", "training", "latent_envs", "cli"]


def layer_of(module: str) -> str:
    """``latentworld.training.trainer`` → ``training``; the package's own ``__init__`` is the top."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "cli"


def imported_modules(path: Path) -> set[str]:
    """Every ``latentworld...`` module a file imports, at its top or inside a function."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("latentworld"):
            found.add(node.module if node.module != "latentworld" else f"latentworld.{node.names[0].name}")
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("latentworld"))
    return found


def test_every_module_belongs_to_a_layer():
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        assert layer_of(module) in LAYERS or module == "latentworld.__init__", module


def test_layers_import_only_downward():
    upward = []
    for path in PACKAGE.rglob("*.py"):
        module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        own = LAYERS.index(layer_of(module)) if module != "latentworld.__init__" else len(LAYERS)
        upward += [f"{module} imports {other}" for other in imported_modules(path)
                   if LAYERS.index(layer_of(other)) > own]
    assert not upward, upward
