"""Renderers of one table: Markdown, HTML (sortable, filterable), CSV and LaTeX (booktabs)."""
from __future__ import annotations

import csv
import html
import io
from dataclasses import dataclass


@dataclass
class Table:
    name: str  # file stem for the CSV / LaTeX exports
    title: str
    head: list[str]
    rows: list[list]
    caption: str = ""


def markdown(t: Table) -> list[str]:
    esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
    return ["| " + " | ".join(map(esc, t.head)) + " |", "|" + "|".join("---" for _ in t.head) + "|",
            *["| " + " | ".join(esc(c) for c in row) + " |" for row in t.rows]]


def html_table(t: Table) -> str:
    th = "".join(f"<th>{html.escape(str(c))}</th>" for c in t.head)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in t.rows)
    return f"<table class='sortable'><thead><tr>{th}</tr></thead><tbody>{trs}</tbody></table>"


def csv_text(t: Table) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(t.head)
    writer.writerows(t.rows)
    return buf.getvalue()


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
                 "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "±": r"$\pm$", "≤": r"$\le$",
                 "×": r"$\times$", "⚠": r"(!)", "·": r"$\cdot$", "–": "--"}


def latex_escape(text) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in str(text))


def latex(t: Table) -> str:
    """A booktabs table: first column left-aligned, the others right-aligned."""
    cols = "l" + "r" * (len(t.head) - 1)
    lines = [r"\begin{table}[ht]", r"\centering", r"\small", rf"\begin{{tabular}}{{{cols}}}", r"\toprule",
             " & ".join(latex_escape(h) for h in t.head) + r" \\", r"\midrule",
             *[" & ".join(latex_escape(c) for c in row) + r" \\" for row in t.rows], r"\bottomrule", r"\end{tabular}",
             rf"\caption{{{latex_escape(t.caption or t.title)}}}", r"\end{table}"]
    return "\n".join(lines) + "\n"


# a sortable-table and filter script for the self-contained HTML page (no network)
SCRIPT = """
document.querySelectorAll('table.sortable th').forEach(function (th) {
  th.title = 'click to sort';
  th.addEventListener('click', function () {
    var table = th.closest('table'), body = table.tBodies[0], i = Array.prototype.indexOf.call(th.parentNode.children, th);
    var asc = th.dataset.asc !== '1'; th.dataset.asc = asc ? '1' : '0';
    var key = function (tr) { var t = tr.children[i].textContent.trim(); var n = parseFloat(t.replace(/,/g, ''));
      return isNaN(n) ? t.toLowerCase() : n; };
    Array.from(body.rows).sort(function (a, b) { var x = key(a), y = key(b);
      return (x < y ? -1 : x > y ? 1 : 0) * (asc ? 1 : -1); }).forEach(function (tr) { body.appendChild(tr); });
  });
});
window.addEventListener('load', function () {  // what a reader sees: every figure decoded and laid out
  var imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-images-shown', imgs.filter(function (i) {
    return i.complete && i.naturalWidth > 0 && i.getBoundingClientRect().width > 0; }).length);
});
var filter = document.getElementById('filter');
if (filter) filter.addEventListener('input', function () {
  var q = filter.value.toLowerCase();
  document.querySelectorAll('section.cell').forEach(function (s) {
    s.style.display = s.dataset.key.toLowerCase().indexOf(q) >= 0 ? '' : 'none'; });
  document.querySelectorAll('table.sortable tbody tr').forEach(function (tr) {
    tr.style.display = !q || tr.textContent.toLowerCase().indexOf(q) >= 0 || tr.closest('section.cell') ? '' : 'none'; });
});
"""

CSS = ("body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}"
       "table{border-collapse:collapse;margin:.5em 0 1.5em;font-size:.88em;display:block;overflow-x:auto}"
       "th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;white-space:nowrap}th{background:#f3f3f3;"
       "cursor:pointer}td:first-child,th:first-child{text-align:left}img{max-width:100%}"
       "#filter{padding:.4em;width:24em;margin:.5em 0 1em}.verdict{font-family:monospace;font-size:.9em}")


def page(body: str) -> str:
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' "
            f"content='width=device-width, initial-scale=1'><title>peftbench report</title><style>{CSS}</style>"
            f"</head><body><h1>peftbench report</h1><input id='filter' placeholder='filter by task, model or method'>"
            f"{body}<script>{SCRIPT}</script></body></html>")
