"""``python -m benchmarks --quick``: one table with every row family (a–h), and no row with a target fails.

A row whose target cannot hold at quick sizes says so in its target cell ("report at --quick (<reason>)",
``benchmarks.harness.Ctx.target``); every other target is judged at quick size too, so a FAIL fails this test.
``--no-compile``: compiling row a's step would take longer than all the rest (``torch.compile`` itself is
tested in tests/models/test_fast_paths.py).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import ROOT

EXPECTED = ("a1", "b1", "b2", "b3", "c1", "c2", "c3", "c4", "d1", "d2", "d3", "d4", "e1", "e2", "f1", "f2", "g1",
            "g1b", "g2", "g3", "g4", "g5", "g6", "g7", "h1", "h1e", "h2", "h2e")


def test_bench_quick_passes_every_row_with_a_target(tmp_path):
    out = subprocess.run([sys.executable, "-m", "benchmarks", "--quick", "--no-compile", "--json",
                          str(tmp_path / "rows.json"), "--out", str(tmp_path / "table.md")],
                         cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and re.fullmatch(r"[a-h]\d+[be]?", cells[0]):
            rows[cells[0]] = cells
    assert set(rows) == set(EXPECTED), f"rows {sorted(rows)} in:\n{out.stdout}"
    saved = {r["key"]: r for r in json.loads((tmp_path / "rows.json").read_text())}
    assert set(saved) == set(rows)
    for key, (_, _, this, _, _, target, verdict) in rows.items():
        float(this)  # every row measured something
        if verdict == "FAIL":
            raise AssertionError(f"row {key} fails at quick size:\n{out.stdout}")
        if target == "report" or target.startswith("report at --quick ("):
            assert verdict == "—" and saved[key]["ok"] is None, (key, target, verdict)
        else:
            assert verdict == "pass" and saved[key]["ok"] is True, (key, target, verdict)
    # The equality rows are correctness checks: they are judged at every size.
    assert all(rows[k][6] == "pass" for k in ("b3", "d2", "e2")), out.stdout
    assert "| id | what |" in (tmp_path / "table.md").read_text() and "machine:" in out.stdout
