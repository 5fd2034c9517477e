"""Prove a refactor changes no output: hash everything the demo produces, compare with a baseline.

Runs ``lienwatch demo`` (the bundled ``sample_data/``, three nights) through the command's
entry point in a fresh temporary folder, with ``PYTHONPATH`` set to the source tree under
test, then hashes every output a user sees:

- every warehouse table (read-only; a canonical text dump, rows sorted, one sha256 each);
- every file under the output folder: each night's review.html, call_list.csv, queue.csv,
  queue.xlsx, mail_manifest.csv, summary.json and validation results, each letter's PDF
  and HTML; and the list of files the run leaves behind;
- what the command prints (its stdout, without Prefect's log lines and progress bars).

What legitimately differs from run to run is normalised, by name, in ``VOLATILE_*`` and
:func:`text` below (found by running the same tree twice and diffing). PDFs and xlsx are
hashed as raw bytes: Typst and xlsxwriter (whose "created" date is the business date)
write identical bytes run to run.

The run checks that the code, templates and SQL it used are the tree's: other checkouts
on ``sys.path`` (the venv's editable install adds /work/main) are taken off it, and the
run fails if a module or a file of another checkout was used.

Usage (about 1-3 minutes a run; not part of the test suite)::

    .venv/bin/python benchmarks/identical.py --tree /path/to/old --out /tmp/before.json
    .venv/bin/python benchmarks/identical.py --out /tmp/after.json --compare /tmp/before.json

``--tree`` defaults to the repository this script is in. ``--compare`` prints each
differing output and exits 1 if any differs. ``--dump DIR`` writes the canonical form of
each output to DIR, to diff two runs when something differs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import tomllib
from collections import Counter
from pathlib import Path

import duckdb

# Warehouse columns whose values differ between two runs of the same code.
VOLATILE_COLUMNS = {
    # wall-clock times
    "loaded_at",
    "read_at",
    "quarantined_at",
    "started_at",
    "finished_at",
    "made_at",
    "trained_at",
    # the landing file's identity on disk: another checkout has other inodes and times
    "inode",
    "mtime_ns",
    "ctime_ns",
}
# JSON keys (summary.json, runs.counts, validation results) whose values differ run to run.
VOLATILE_KEYS = {
    # step timings and memory (summary.json, runs.counts)
    "seconds",
    "cpu_seconds",
    "peak_rss_mb",
    # Great Expectations' validation results: a uuid4 per expectation and per validation,
    # and the wall-clock times of the validation
    "id",
    "validation_id",
    "ge_load_time",
    "run_time",
    "validation_time",
}
PREFECT_LOG_LINE = re.compile(r"^\d\d:\d\d:\d\d\.\d+ \| .*\n?", re.M)  # random run names, times
PROGRESS_BAR = re.compile(r" *\d+% ▕[^(]*\([^)]*\) *")  # Great Expectations' progress: timed
TIMINGS = re.compile(r", seconds [\d.]+, cpu_seconds [\d.]+, peak_rss_mb \d+")
COUNTS_LINE = re.compile(r"^(    [\w-]+: )(.*)$", re.M)  # "    by_tier: early_warning 712, ..."

BOOT = r"""
import importlib, json, os, sys
tree, report, entry = sys.argv[1:4]
del sys.argv[1:4]
sys.argv[0] = "lienwatch"
others = [p for p in sys.path if p and os.path.isfile(os.path.join(p, "lienwatch", "__init__.py"))
          and os.path.realpath(p) != tree]
sys.path[:] = [p for p in sys.path if p not in others]
opened = set()
sys.addaudithook(lambda event, args: event == "open" and isinstance(args[0], str)
                 and opened.add(os.path.abspath(args[0])))
module, _, attr = entry.partition(":")
try:
    getattr(importlib.import_module(module), attr)()
finally:
    with open(report, "w") as f:
        json.dump({"others": others, "opened": sorted(opened), "venv": sys.prefix,
                   "modules": {n: m.__file__ for n, m in list(sys.modules.items())
                               if getattr(m, "__file__", None)}}, f)
"""


def run_demo(tree: Path, work: Path) -> str:
    """Run ``lienwatch demo`` from ``tree`` with ``work`` as the folder; return its stdout."""
    settings = work / "lienwatch.toml"
    settings.write_text(
        "[paths]\n"
        f"data = {json.dumps(str(tree / 'sample_data'))}\n"
        f"db = {json.dumps(str(work / 'var' / 'lienwatch.duckdb'))}\n"
        f"out = {json.dumps(str(work / 'var' / 'out'))}\n"
    )
    scripts = tomllib.loads((tree / "pyproject.toml").read_text())["project"]["scripts"]
    report = work / "imports.json"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            BOOT,
            str(tree),
            str(report),
            scripts["lienwatch"],
            "demo",
            "--config",
            str(settings),
        ],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        sys.exit(
            f"lienwatch demo failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
        )
    check_imports(tree, json.loads(report.read_text()))
    report.unlink()
    settings.unlink()
    return done.stdout


def check_imports(tree: Path, used: dict) -> None:
    """Fail unless the project's modules and files (templates, SQL, catalogue) were the tree's."""
    packages = {d.name for d in tree.iterdir() if (d / "__init__.py").is_file()}
    ours = {n: f for n, f in used["modules"].items() if n.split(".")[0] in packages}
    foreign = [f"{n}: {f}" for n, f in ours.items() if not f.startswith(f"{tree}/")]
    foreign += [
        f
        for f in used["opened"]
        for o in used["others"]  # the venv may be in a checkout
        if f.startswith(f"{o.rstrip('/')}/") and not f.startswith(f"{used['venv']}/")
    ]
    if foreign or "lienwatch" not in ours:
        sys.exit(
            "the run did not use the tree's code only:\n  "
            + "\n  ".join(foreign[:20] or ["no lienwatch"])
        )
    read = Counter(
        str(Path(f).parent.relative_to(tree))
        for f in used["opened"]
        if f.startswith(f"{tree}/") and "__pycache__" not in f
    )
    print(
        f"imported {ours['lienwatch']} ({len(ours)} project modules, all from the tree;"
        f" {', '.join(used['others']) or 'no other checkout'} taken off sys.path)"
    )
    print(
        "read from the tree (in the night's process): "
        + ", ".join(f"{folder} ({n})" for folder, n in sorted(read.items()))
    )
    if not any("templates" in folder for folder in read):
        sys.exit("no template was read from the tree")


def text(value: str, subs: dict[str, str]) -> str:
    """Replace the temporary folder, the tree's path and the run ids by placeholders."""
    for old, new in subs.items():
        value = value.replace(old, new)
    return value


def canonical_json(value, subs: dict[str, str]):
    """Volatile keys blanked; keys sorted (dicts from group-bys come in varying order)."""
    if isinstance(value, dict):
        return {
            k: "<volatile>" if k in VOLATILE_KEYS else canonical_json(v, subs)
            for k, v in sorted(value.items())
        }
    if isinstance(value, list):
        return [canonical_json(v, subs) for v in value]
    return text(value, subs) if isinstance(value, str) else value


def dump_json(value, subs: dict[str, str]) -> bytes:
    return json.dumps(canonical_json(value, subs), indent=1, ensure_ascii=False).encode()


def warehouse(db: Path, subs: dict[str, str]) -> dict[str, bytes]:
    """Each table as text: its columns, then its rows (volatile columns blanked), sorted."""
    dumps = {}
    with duckdb.connect(str(db), read_only=True) as con:
        tables = con.execute(
            "SELECT table_name FROM information_schema.tables "
            "WHERE table_schema = 'main' ORDER BY 1"
        ).fetchall()
        for (name,) in tables:
            cursor = con.execute(f'SELECT * FROM "{name}"')
            columns = [(d[0], str(d[1])) for d in cursor.description]
            rows = []
            for row in cursor.fetchall():
                cells = []
                for (column, kind), value in zip(columns, row, strict=True):
                    if column in VOLATILE_COLUMNS:
                        value = "<volatile>"
                    elif kind == "JSON" and value is not None:  # runs.counts: timings inside
                        value = canonical_json(json.loads(value), subs)
                    cells.append(value)
                rows.append(text(json.dumps(cells, default=str, ensure_ascii=False), subs))
            header = json.dumps(columns)
            dumps[f"table:{name}"] = "\n".join([header, *sorted(rows)]).encode()
    return dumps


def outputs(tree: Path, work: Path, stdout: str) -> dict[str, bytes]:
    """Every output of the run in canonical form, by name."""
    db, out = work / "var" / "lienwatch.duckdb", work / "var" / "out"
    with duckdb.connect(str(db), read_only=True) as con:
        run_ids = [
            r
            for (r,) in con.execute(
                "SELECT run_id FROM runs ORDER BY as_of_date, run_id"
            ).fetchall()
        ]
    # run ids end in a random uuid part; they show in file contents (summary.json, runs)
    subs = {str(work): "<tmp>", str(tree): "<tree>"}
    subs |= {run_id: f"<run {i}>" for i, run_id in enumerate(run_ids, 1)}
    found = warehouse(db, subs)
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        name = f"file:{text(str(path.relative_to(out)), subs)}"
        if path.suffix == ".json":
            found[name] = dump_json(json.loads(path.read_text()), subs)
        elif path.suffix in {".pdf", ".xlsx"}:
            found[name] = path.read_bytes()
        else:
            found[name] = text(path.read_text(encoding="utf-8"), subs).encode()
    left = sorted(text(str(p.relative_to(work)), subs) for p in work.rglob("*") if p.is_file())
    found["files left by the run"] = "\n".join(left).encode()
    shown = PREFECT_LOG_LINE.sub("", PROGRESS_BAR.sub("", TIMINGS.sub("", stdout)))
    shown = "\n".join(line for line in re.split(r"[\r\n]", shown) if line.strip())  # bars' residue
    # counts printed from dicts (by_tier, by_signal, events...) come in varying order
    shown = COUNTS_LINE.sub(lambda m: m[1] + ", ".join(sorted(m[2].split(", "))), shown)
    found["stdout"] = text(shown, subs).encode()
    return found


def compare(hashes: dict[str, str], baseline: dict[str, str]) -> int:
    names = sorted(hashes.keys() | baseline.keys())
    differ = [n for n in names if hashes.get(n) != baseline.get(n)]
    for name in differ:
        state = "missing" if name not in hashes else "new" if name not in baseline else "differs"
        print(f"  {state}: {name}")
    print(
        f"{len(names)} outputs compared, all identical"
        if not differ
        else f"{len(differ)} of {len(names)} differ"
    )
    return 1 if differ else 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--tree",
        type=Path,
        default=Path(__file__).resolve().parents[1],
        help="source tree to run (default: this repository)",
    )
    p.add_argument("--out", type=Path, help="write the hashes here (JSON)")
    p.add_argument("--compare", type=Path, help="baseline hashes to compare with")
    p.add_argument("--dump", type=Path, help="write each output's canonical form to this folder")
    args = p.parse_args()
    tree = args.tree.resolve()
    with tempfile.TemporaryDirectory(prefix="lw-identical-") as tmp:
        work = Path(tmp).resolve()
        started = time.perf_counter()
        stdout = run_demo(tree, work)
        seconds = time.perf_counter() - started
        found = outputs(tree, work, stdout)
    print(f"demo from {tree}: {seconds:.0f} s; {len(found)} outputs hashed")
    hashes = {name: hashlib.sha256(data).hexdigest() for name, data in sorted(found.items())}
    if args.dump:
        for name, data in found.items():
            target = args.dump / name.replace(":", "/").replace(" ", "_")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
    if args.out:
        args.out.write_text(json.dumps({"tree": str(tree), "outputs": hashes}, indent=1) + "\n")
    if args.compare:
        sys.exit(compare(hashes, json.loads(args.compare.read_text())["outputs"]))


if __name__ == "__main__":
    main()
