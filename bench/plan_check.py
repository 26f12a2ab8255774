"""Check ``peftbench plan`` against the runs it predicts: plan bench/plan_grid.yaml, run the grid, print predicted
vs measured peak memory and time with the relative error.

    python bench/plan_check.py [grid.yaml]      (the results folder is emptied first)
"""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main() -> None:
    grid = sys.argv[1] if len(sys.argv) > 1 else str(HERE / "plan_grid.yaml")
    os.environ.setdefault("PEFTBENCH_DATA", str(HERE.parents[1] / "shared" / "datasets"))
    from peftbench.config import load_grid
    from peftbench.store import Store

    out = Path(load_grid(grid).output_dir)
    shutil.rmtree(out, ignore_errors=True)
    planned = json.loads(subprocess.run([sys.executable, "-m", "peftbench.cli", "plan", grid, "--json"], check=True,
                                        capture_output=True, text=True).stdout)
    subprocess.run([sys.executable, "-m", "peftbench.cli", "run", grid, "--quiet", "--no-report"], check=True)
    measured = {r.method: r for r in Store(out).results()}
    print("| Method | Peak memory predicted / measured (MB) | Error | Run time predicted / measured (s) | Error |")
    print("|---|---|---|---|---|")
    total_p = total_m = 0.0
    for row in planned["rows"]:
        m = measured[row["method"]]
        mem, secs = m.memory.peak_memory_mb, m.timing.wall_seconds
        total_p, total_m = total_p + row["run_seconds"], total_m + secs
        print(f"| {row['method']} | {row['peak_memory_mb']:.0f} / {mem:.0f} | {row['peak_memory_mb'] / mem - 1:+.1%} | "
              f"{row['run_seconds']:.0f} / {secs:.0f} | {row['run_seconds'] / secs - 1:+.1%} |")
    print(f"| grid total | | | {total_p:.0f} / {total_m:.0f} | {total_p / total_m - 1:+.1%} |")
    contended = [r.method for r in measured.values() if r.timing.contended]
    print(f"\nContended runs (timings unreliable): {', '.join(contended) or 'none'}; load average "
          f"{os.getloadavg()[0]:.2f}.")


if __name__ == "__main__":
    main()
