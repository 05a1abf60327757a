"""pytest in docs/: the Markdown pages' examples run as doctests; Sphinx's files do not.

conf.py and the gallery hooks import Sphinx (the docs extra, not the test extra), and the
build writes copies of the examples under _build/ and auto_examples/.
"""

collect_ignore = ["conf.py", "sphinxext", "_build", "auto_examples", "generated"]
