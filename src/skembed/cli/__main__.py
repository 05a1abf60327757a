"""``python -m skembed.cli``: the ``skembed`` command."""

import sys

from .main import main

sys.exit(main())
