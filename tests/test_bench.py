"""scripts/bench.py --quick prints one table with every benchmark row (a–g), each with a number."""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT


def test_bench_quick_prints_every_row(tmp_path):
    out = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--quick", "--json",
                          str(tmp_path / "rows.json"), "--out", str(tmp_path / "table.md")],
                         cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"[a-g]\d+b?", cells[0]):
            rows[cells[0]] = cells
    for key in ("a1", "b1", "b2", "b3", "c1", "c2", "d1", "d2", "e1", "e2", "f1", "f2", "g1", "g1b", "g2"):
        assert key in rows, f"row {key} missing from:\n{out.stdout}"
    assert {k[0] for k in rows} == set("abcdefg")
    for cells in rows.values():
        float(cells[2])  # "this" is a number
        assert cells[6] in ("pass", "FAIL", "—"), cells
    assert sum(k.startswith("g") for k in rows) >= 7  # scaling and the peak memory of every stage
    saved = json.loads((tmp_path / "rows.json").read_text())
    assert {r["key"] for r in saved} == set(rows)
    assert "| id | what |" in (tmp_path / "table.md").read_text() and "machine:" in out.stdout
