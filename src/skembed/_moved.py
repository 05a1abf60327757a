"""Paths that skembed 0.1's docs showed, forwarded to where their code lives now, with a warning.

scikit-learn kept its old public module paths as stubs that warned and forwarded while users
moved. skembed does the same without stub files (which would look public again): a finder
answers ``import skembed.models`` with a module whose attributes come from
``skembed._models``, and a documented module forwards a name that moved
(``skembed.embedder.MissingTextWarning``) through :func:`moved_name`. Each use warns with a
``FutureWarning`` naming the new place; they stop working in :data:`REMOVED_IN`.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
import warnings

REMOVED_IN = "0.3.0"

# old module path -> (the module that holds its code now, names renamed there)
MOVED_MODULES: dict[str, tuple[str, dict[str, str]]] = {
    "skembed.cache": ("skembed._cache", {}),
    "skembed.locate": ("skembed._locate", {"resolve": "find_model"}),
    "skembed.models": ("skembed._models", {}),
    "skembed.pooling": ("skembed._pooling", {}),
    "skembed.schedule": ("skembed._schedule", {}),
}


def moved_name(module: str, name: str, home: str) -> object:
    """Return ``name`` from its new ``home`` module, warning that ``module.name`` moved."""
    _warn(
        f"{module}.{name} moved: import it from {home} ({home.split('.')[0]} exports every "
        f"public name); the old path stops working in skembed {REMOVED_IN}"
    )
    return getattr(importlib.import_module(home), name)


def install() -> None:
    """Let ``import skembed.models`` (and the others of MOVED_MODULES) find their new home."""
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.append(_Finder())


class _Finder:
    """Find the old module paths, after every other finder has found no file for them.

    A finder and a loader as the import system calls them (importlib.abc's protocols,
    without importing importlib.abc, which would slow ``import skembed`` down).
    """

    def find_spec(self, fullname, path, target=None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.machinery.ModuleSpec(fullname, _Loader())


class _Loader:
    """Make an old path a module that warns once and reads its attributes from the new one."""

    def create_module(self, spec):
        return None  # a plain new module

    def exec_module(self, module) -> None:
        home, renamed = MOVED_MODULES[module.__name__]
        _warn(
            f"{module.__name__} is internal to skembed and moved to {home}, which may change "
            f"without notice; it stops working in skembed {REMOVED_IN}. Import public names "
            "from skembed instead (skembed.__all__)"
        )

        def attribute(name: str):
            return getattr(importlib.import_module(home), renamed.get(name, name))

        module.__getattr__ = attribute  # PEP 562: asked for each name the module lacks


def _warn(message: str) -> None:
    """Warn a FutureWarning at the first caller outside this module and Python's import."""
    frame, level = sys._getframe(1), 2  # stacklevel 2: the caller of _warn
    while frame is not None:
        name = frame.f_code.co_filename
        if "importlib" in name and "_bootstrap" in name:
            frame = frame.f_back  # the import system's frames: warnings does not count them
            continue
        if name not in (__file__, importlib.__file__) and frame.f_code.co_name != "__getattr__":
            break  # not this module, importlib.import_module, nor a module's __getattr__
        frame, level = frame.f_back, level + 1
    warnings.warn(message, FutureWarning, stacklevel=level)
