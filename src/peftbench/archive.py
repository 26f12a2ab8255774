"""A compact archive of what a report's verdicts need: every finished run's config, result and per-example test
predictions, in one gzipped JSON-lines file (no weights, no checkpoints: a few MB for a twin). Published twins keep
one beside their report, so the verdicts can be recomputed -- by a later, better test too -- on any machine:

    peftbench archive RESULTS OUT.jsonl.gz        # write
    peftbench report OUT.jsonl.gz [--into DIR]    # unpack into a results folder (run folders + store), render

The first line is a header (``kind``, ``version``, the report settings saved beside the store); each further
line one run.
"""
from __future__ import annotations

import gzip
import json
from pathlib import Path

from .errors import OneLine
from .result import RunResult
from .run.folder import RunFolder, write_json
from .store import REPORT_SETTINGS as SETTINGS, Store

KIND = "peftbench-archive"
VERSION = 1
SUFFIX = ".jsonl.gz"


class ArchiveError(OneLine, ValueError):
    """A one-line, user-facing error about an archive."""


def is_archive(path: str | Path) -> bool:
    return str(path).endswith(SUFFIX) and Path(path).is_file()


def write(results_dir: str | Path, out: str | Path) -> int:
    """Every finished run of ``results_dir`` into ``out``; returns how many."""
    results_dir, out = Path(results_dir), Path(out)
    if not (results_dir / "peftbench.sqlite").exists():
        raise ArchiveError(f"no peftbench results in '{results_dir}' (expected peftbench.sqlite)")
    if not str(out).endswith(SUFFIX):
        raise ArchiveError(f"an archive's name ends in {SUFFIX}; got '{out}'")
    store = Store(results_dir, check=False)
    try:
        results = store.results(with_config=True)
    finally:
        store.close()
    settings = results_dir / SETTINGS
    header = {"kind": KIND, "version": VERSION,
              "settings": json.loads(settings.read_text(encoding="utf-8")) if settings.exists() else None}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=9) as f:
        f.write(json.dumps(header) + "\n")
        for r in sorted(results, key=lambda r: r.run_id):
            folder = RunFolder(r.folder)
            preds = folder.read_predictions("test") if folder.predictions.exists() else []
            f.write(json.dumps({"slug": Path(r.folder).name, "config": r.config, "result": r.to_json(),
                                "test_predictions": preds}, ensure_ascii=False, default=str) + "\n")
    tmp.replace(out)
    return len(results)


def unpack(archive: str | Path, into: str | Path) -> int:
    """An archive into a results folder (a run folder per run, the report settings, a store synced from them);
    returns the runs unpacked. A folder that already holds other results is refused."""
    archive, into = Path(archive), Path(into)
    try:
        with gzip.open(archive, "rt", encoding="utf-8") as f:
            header = json.loads(f.readline())
            if header.get("kind") != KIND:
                raise ArchiveError(f"'{archive}' is not a peftbench archive (no '{KIND}' header)")
            if header.get("version", 0) > VERSION:
                raise ArchiveError(f"'{archive}' is archive version {header['version']}; this peftbench reads up "
                                   f"to {VERSION}: upgrade peftbench")
            runs = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError) as exc:
        raise ArchiveError(f"'{archive}' cannot be read as a peftbench archive ({str(exc)[:120]})") from None
    if (into / "runs").is_dir() and any((into / "runs").iterdir()):
        held = {d.name for d in (into / "runs").iterdir()}
        if not held <= {r["slug"] for r in runs}:
            raise ArchiveError(f"'{into}' already holds other runs; unpack into an empty folder (--into)")
    into.mkdir(parents=True, exist_ok=True)
    store = Store(into)
    try:
        for run in runs:
            folder = RunFolder(store.run_dir(run["slug"]))
            folder.path.mkdir(parents=True, exist_ok=True)
            folder.write_config(run["config"])
            result = RunResult.load(run["result"])
            folder.write_result(result)
            with open(folder.predictions, "w", encoding="utf-8") as f:
                for row in run["test_predictions"]:
                    f.write(json.dumps(row, ensure_ascii=False) + "\n")
        store.sync()
    finally:
        store.close()
    if header.get("settings"):
        write_json(into / SETTINGS, header["settings"])
    return len(runs)
