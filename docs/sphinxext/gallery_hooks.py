"""sphinx-gallery hooks for skembed's examples: their arguments and the PNG each one writes.

sphinx-gallery runs an example in the example's own folder with these arguments; the
example saves its figure to ``--png`` and closes it, so the matplotlib scraper finds no open
figure and ``png_files`` moves the file into the gallery's images instead.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from sphinx_gallery.scrapers import figure_rst

# The command line of each executed example in the docs build, on the default model.
# paraphrase_mrpc reads MRPC from shared/data beside the repository (as the tests do); all
# 4,076 pairs take minutes on two cores, the first 1,000 show the same picture.
ARGUMENTS = {
    "cluster_banking77": ["--png", "banking77_clusters.png"],
    "paraphrase_mrpc": ["--rows", "1000", "--png", "mrpc_cosine.png"],
    # half the table: about 40 s on two cores with PyTorch (the docs install has no ONNX)
    "tables_skrub": ["--rows", "1000", "--png", "tables_skrub.png"],
}


def _png(src_file: str) -> Path | None:
    arguments = ARGUMENTS.get(Path(src_file).stem, [])
    if "--png" not in arguments:
        return None
    return Path(src_file).parent / arguments[arguments.index("--png") + 1]


def example_arguments(gallery_conf: dict, script_vars: dict) -> list[str]:
    """Return the arguments of an example; remove a PNG left by an earlier, failed build."""
    png = _png(script_vars["src_file"])
    if png is not None:
        png.unlink(missing_ok=True)
    return ARGUMENTS.get(Path(script_vars["src_file"]).stem, [])


def png_files(block, block_vars: dict, gallery_conf: dict) -> str:
    """Move the PNG the example just wrote into the gallery's images; return its RST."""
    png = _png(block_vars["src_file"])
    if png is None or not png.is_file():
        return ""
    image = Path(next(block_vars["image_path_iterator"]))
    shutil.move(png, image)
    return figure_rst([str(image)], gallery_conf["src_dir"])
