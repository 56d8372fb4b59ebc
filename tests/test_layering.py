"""The layering rule: the domain package `scalper/` never imports ray itself (not even inside
a function); actors/, serve/ and training/ are the Ray layers over it."""

from __future__ import annotations

import ast
from pathlib import Path

SCALPER = Path(__file__).resolve().parents[1] / "scalper"


def ray_imports(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [f"{path.name}:{node.lineno}" for a in node.names if a.name.split(".")[0] == "ray"]
        elif (
            isinstance(node, ast.ImportFrom)
            and node.level == 0
            and (node.module or "").split(".")[0] == "ray"
        ):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_of_the_domain_package_imports_ray():
    modules = sorted(SCALPER.rglob("*.py"))
    assert len(modules) > 30
    assert [hit for m in modules for hit in ray_imports(m)] == []
