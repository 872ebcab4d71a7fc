"""Benchmark reporting: a ratio table per group at the end of the run.

pytest-benchmark prints absolute times; the claims in this project are ratios measured in
one run on one machine (2 cores, no GPU here), so after its table this prints, for every
benchmark group, each benchmark's median and its ratio to the group's baseline (the one
with ``benchmark.extra_info["baseline"] = True``), how many times faster than the group's
slow reference it is (the one with ``extra_info["reference"] = True``, if any), plus any
other extra_info (peak memory, cell count). ``--ratio-json PATH`` also writes the table as JSON, for the docs' plots.

    python -m pytest benchmarks/test_weightmap.py --benchmark-enable --ratio-json ratios.json
"""
import json
import os
import subprocess
import sys

import pytest

from unet_ref.files import atomic_write


def pytest_addoption(parser):
    parser.addoption("--ratio-json", default=None, metavar="PATH",
                     help="write the per-group median/ratio table as JSON to PATH")


def _ratio_table(config):
    """{group: [row, ...]} with name, median_s, ratio and extra_info per benchmark."""
    session = getattr(config, "_benchmarksession", None)
    groups = {}
    for bench in getattr(session, "benchmarks", []):
        if bench:  # has stats (not skipped or failed)
            groups.setdefault(bench.group or "(no group)", []).append(bench)
    table = {}
    for group, benches in groups.items():
        baselines = [b for b in benches if b.extra_info.get("baseline")]
        base = baselines[0].stats.median if baselines else None
        references = [b for b in benches if b.extra_info.get("reference")]
        ref = references[0].stats.median if references else None
        table[group] = [
            {
                "name": b.name,
                "median_s": b.stats.median,
                "rounds": b.stats.rounds,
                "ratio": b.stats.median / base if base else None,
                "speedup_vs_reference": ref / b.stats.median if ref else None,
                "extra_info": {k: v for k, v in b.extra_info.items() if k not in ("baseline", "reference")},
                "baseline": bool(b.extra_info.get("baseline")),
            }
            for b in sorted(benches, key=lambda b: b.stats.median)
        ]
    return table


def _write_json(path, table):
    with atomic_write(path, "w") as f:
        json.dump({"machine": f"{os.cpu_count()} cores", "groups": table}, f, indent=2)


@pytest.hookimpl(trylast=True)
def pytest_terminal_summary(terminalreporter, exitstatus, config):
    table = _ratio_table(config)
    if not table:
        return
    write = terminalreporter.write_line
    terminalreporter.section("medians, ratio to each group's baseline, speed-up over its reference")
    for group, rows in table.items():
        write(f"[{group}]")
        for row in rows:
            ratio = f"{row['ratio']:8.3f}x" if row["ratio"] is not None else "       - "
            speedup = row["speedup_vs_reference"]
            speedup = f"{speedup:7.0f}x faster than ref" if speedup else " " * 24
            extra = "  ".join(f"{k}={v}" for k, v in row["extra_info"].items())
            mark = " (baseline)" if row["baseline"] else ""
            write(f"  {row['name']:<40} {row['median_s'] * 1e3:10.2f} ms {ratio}  {speedup}  {extra}{mark}")
    path = config.getoption("--ratio-json")
    if path:
        _write_json(path, table)
        write(f"ratio table written to {path}")


@pytest.fixture
def fresh_process():
    """run(script, argument) -> dict: `script` run in a new Python process with one JSON
    argument (the project on its path, TensorFlow quiet), returning the JSON of its last
    output line. For measurements that must not see an earlier call's memory."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]))

    def run(script, argument):
        out = subprocess.run([sys.executable, script, json.dumps(argument)], env=env, capture_output=True, text=True,
                             timeout=3600)
        if out.returncode:
            raise RuntimeError(f"measurement failed:\n{out.stderr[-3000:]}")
        return json.loads(out.stdout.strip().splitlines()[-1])

    return run
