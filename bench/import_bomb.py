"""Import bombs (SEC-3): time and peak memory of refusing each one, as the import screen would.

    .venv/bin/python bench/import_bomb.py
    .venv/bin/python bench/import_bomb.py --cells 2000000 --strings 10000000

Builds the bombs with zipfile (tests/bombs.py), runs ``seed.importer.read_table`` on each with
the web limits (5 MB, 20,000 rows) and prints the file size, the verdict, the wall time and the
peak of traced Python memory plus the growth of the process's maximum resident size. Nothing is
asserted on timings; tests/test_import_bombs.py bounds the memory.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from seed.importer import ImportFileError, read_table  # noqa: E402
from tests import bombs  # noqa: E402

MB = 1024 * 1024


def measure(label: str, data: bytes, name: str) -> None:
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    started = time.perf_counter()
    try:
        header, rows = read_table(data, name)
        verdict = f"read ({len(rows)} rows)"
    except ImportFileError as exc:
        verdict = f"refused: {str(exc.message)[:60]}…"
    elapsed = time.perf_counter() - started
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    print(f"{label:<28} {len(data) / 1024:>8.0f} KB  {elapsed * 1000:>8.1f} ms  "
          f"traced peak {traced / MB:>6.1f} MB  rss growth {rss_growth / MB:>6.1f} MB  {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=1_000_000)
    parser.add_argument("--strings", type=int, default=5_000_000)
    args = parser.parse_args()
    app = create_app({"TESTING": True, "SQLALCHEMY_DATABASE_URI": "sqlite://"})
    with app.test_request_context():
        measure(f"{args.cells:,} cells", bombs.cell_bomb(args.cells), "units.xlsx")
        measure(f"{args.strings:,} shared strings", bombs.shared_strings_bomb(args.strings), "units.xlsx")
        wide = "小区编码,楼栋,房号\n".encode() + b"demo" + b"," * (5 * MB - 100) + b"\n"
        measure("CSV line of 5M commas", wide, "units.csv")


if __name__ == "__main__":
    main()
