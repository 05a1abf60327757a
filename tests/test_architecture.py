"""The package keeps its plan (docs/development.md "Architecture"): small modules, no module
reaching into another's private names. The layers themselves are import-linter's contracts
in pyproject.toml, checked by `make lint`."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "skembed"
MODULES = sorted(PACKAGE.rglob("*.py"))


def _imported_names(path: Path):
    """Yield (module imported from, name) for every `from X import name` of a skembed module."""
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and (node.level or "skembed" in (node.module or "")):
            for alias in node.names:
                yield node.module or ".", alias.name


def test_no_module_is_over_500_lines():
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in MODULES}
    assert len(sizes) > 40
    assert {name: n for name, n in sizes.items() if n > 500} == {}


def test_no_module_imports_another_modules_private_names():
    # a private module (skembed._files) may be imported whole: its names are its interface
    modules = {p.stem for p in MODULES}
    private = [
        f"{path.relative_to(PACKAGE)} imports {name} from {module}"
        for path in MODULES
        for module, name in _imported_names(path)
        if name.startswith("_") and not name.startswith("__") and name not in modules
    ]
    assert private == []


def test_every_module_says_what_it_holds():
    undocumented = [
        path.relative_to(PACKAGE).as_posix()
        for path in MODULES
        if path.name != "__main__.py" and not ast.get_docstring(ast.parse(path.read_text()))
    ]
    assert undocumented == []
