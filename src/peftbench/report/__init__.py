"""The report: ``aggregate`` (cells of runs), ``statistics`` (intervals, paired bootstrap), ``pes`` (the
Performance-Efficiency Score), ``compare`` (methods against a baseline), ``plots`` (figures), ``formats``
(Markdown / HTML / CSV / LaTeX tables) and ``render`` (the page)."""
from .aggregate import build_cells, select_sweeps
from .pes import pes
from .render import render

__all__ = ["render", "build_cells", "select_sweeps", "pes"]
