"""What skembed offers its users, checked: every public name resolves, internals are marked
private, every warning and error lives in skembed.exceptions, skembed 0.1's documented paths
still work with a FutureWarning, and every package the code imports is declared."""

from __future__ import annotations

import ast
import importlib
import importlib.metadata
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import skembed

PACKAGE = Path(skembed.__file__).resolve().parent
ROOT = PACKAGE.parents[1]
DOCUMENTED = {"embedder", "static", "search", "pairs", "dask", "evaluate", "datasets"}
# finetune: its functions and Update (pickles name skembed.finetune.Update); exceptions: the
# warnings and errors; cli: the skembed command
PUBLIC_MODULES = DOCUMENTED | {"finetune", "exceptions", "cli"}


def test_every_name_in_skembed_all_resolves_and_says_what_it_is():
    for name in skembed.__all__:
        value = getattr(skembed, name)
        if name not in ("__version__", "POOLING_MODES"):
            assert (value.__doc__ or "").strip(), f"skembed.{name} has no docstring"
    assert skembed.__version__ == importlib.metadata.version("skembed") == "0.2.0"


@pytest.mark.parametrize("module", sorted(PUBLIC_MODULES - {"cli"}))
def test_every_name_a_documented_module_exports_resolves(module):
    if module == "dask":
        pytest.importorskip("distributed")
    imported = importlib.import_module(f"skembed.{module}")
    assert imported.__all__, f"skembed.{module} lists no public names"
    for name in imported.__all__:
        assert getattr(imported, name) is not None


def test_modules_not_documented_are_marked_private():
    names = {p.stem for p in PACKAGE.glob("*.py")} | {
        p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").is_file()
    }
    public = {n for n in names if not n.startswith("_")}
    assert public == PUBLIC_MODULES


def _classes_of_warnings_and_errors() -> dict[str, str]:
    """Return {class name: module file} of every Warning/Exception subclass skembed defines."""
    found = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                re.search(r"(Error|Warning|Exception)$", ast.unparse(base)) for base in node.bases
            ):
                found[node.name] = path.relative_to(PACKAGE).as_posix()
    return found


def test_every_warning_and_error_lives_in_skembed_exceptions_and_is_exported():
    from skembed import exceptions

    defined = _classes_of_warnings_and_errors()
    # the command line's own: argparse's usage errors, turned into exit status 2, never raised
    # to a caller
    defined.pop("UsageError")
    assert set(defined.values()) == {"exceptions.py"}
    assert sorted(defined) == exceptions.__all__
    assert len(defined) == 16
    for name in defined:
        assert getattr(skembed, name) is getattr(exceptions, name)
        assert name in skembed.__all__


def test_skembed_01_documented_paths_still_work_with_a_future_warning():
    # a fresh process: each old module path warns when it is first imported
    code = """
import importlib, json, warnings
warnings.simplefilter("always")
out = {}
checks = [
    ("skembed.embedder", "MissingTextWarning", "skembed.exceptions"),
    ("skembed.embedder", "TruncationWarning", "skembed.exceptions"),
    ("skembed.embedder", "Tokenization", "skembed"),
    ("skembed.models", "load", "skembed._models"),
    ("skembed.schedule", "DEFAULT_MAX_STEPS", "skembed._schedule"),
    ("skembed.cache", "clear_cache", "skembed._cache"),
    ("skembed.pooling", "POOLING_FUNCTIONS", "skembed._pooling"),
    ("skembed.locate", "resolve", "skembed._locate"),
]
for old, name, home in checks:
    with warnings.catch_warnings(record=True) as caught:
        value = getattr(importlib.import_module(old), name)
    new = getattr(importlib.import_module(home), "find_model" if name == "resolve" else name)
    out[f"{old}.{name}"] = [value is new, [(w.category.__name__, str(w.message)) for w in caught]]
print(json.dumps(out))
"""
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    result = json.loads(run.stdout)
    assert len(result) == 8
    for path, (same, caught) in result.items():
        assert same, path
        assert [category for category, _ in caught] == ["FutureWarning"], (path, caught)
        assert "0.3.0" in caught[0][1]
    assert (
        "import it from skembed.exceptions"
        in result["skembed.embedder.MissingTextWarning"][1][0][1]
    )
    assert "moved to skembed._models" in result["skembed.models.load"][1][0][1]


def _third_party_imports() -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return {name for name in found if name not in stdlib and name != "skembed"}


def _requirement_name(requirement: str) -> str:
    return re.split(r"[\s\[<>=!~;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def test_every_imported_package_is_declared_as_a_dependency_or_extra():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    for extra, requirements in project["optional-dependencies"].items():
        if extra not in ("test", "docs", "bench"):  # a user's extras, not the developers'
            declared |= {_requirement_name(r) for r in requirements}
    distributions = importlib.metadata.packages_distributions()
    undeclared = {
        module: distributions.get(module)
        for module in _third_party_imports()
        if not {d.lower().replace("_", "-") for d in distributions.get(module, [module])} & declared
    }
    assert undeclared == {}
