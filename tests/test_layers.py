"""One-way imports between layers (docs/architecture.md): a module may import
its own layer and the layers listed before it, never one after it."""

import ast
from pathlib import Path

import pytest

ORDER = [
    "core",
    "mechanisms",
    "agents",
    "envs",
    "learners",
    "markets",
    "embeddings",
    "algos",
    "experiment",
    "cli",
]
PACKAGE = Path(__file__).resolve().parents[1] / "marketjax"


def _layer(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "marketjax" or len(parts) < 2:
        return None
    return parts[1] if parts[1] in ORDER else None


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return found


FILES = sorted(
    p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE or p.stem == "cli"
)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_no_module_imports_a_later_layer(path):
    own = path.stem if path.parent == PACKAGE else path.relative_to(PACKAGE).parts[0]
    rank = ORDER.index(own)
    bad = [m for m in _imports(path) if _layer(m) and ORDER.index(_layer(m)) > rank]
    assert not bad, f"{path.relative_to(PACKAGE)} imports {bad}"
