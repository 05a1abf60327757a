"""The ``skembed`` command (``skembed.cli:main``): one module per command family.

:mod:`skembed.cli.main` holds the parser and :func:`main`; :mod:`~skembed.cli.encode`,
:mod:`~skembed.cli.search`, :mod:`~skembed.cli.inspect` (similarity, tokenize, info) and
:mod:`~skembed.cli.evaluation` (eval) each declare and run their commands;
:mod:`~skembed.cli.common` holds the model options they share.
"""

from __future__ import annotations

from .main import build_parser, main

__all__ = ["build_parser", "main"]
