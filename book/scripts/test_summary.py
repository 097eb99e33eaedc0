#!/usr/bin/env python3
"""Sum the JUnit XML reports `make test` writes and print one closing line.

Usage: ``python book/scripts/test_summary.py REPORT.xml ...``. Prints one line per phase
and then ``total: N passed, N failed, N skipped``; exits 1 if a report is missing, ran no
test, or has failures/errors (so a phase can never pass by running nothing).
"""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path


def counts(report: Path) -> dict[str, int]:
    """Tests, failures (failed + errors) and skips of one pytest JUnit XML file."""
    root = ET.parse(report).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    total = {"tests": 0, "failed": 0, "skipped": 0}
    for s in suites:
        total["tests"] += int(s.get("tests", 0))
        total["failed"] += int(s.get("failures", 0)) + int(s.get("errors", 0))
        total["skipped"] += int(s.get("skipped", 0))
    return total


def main(argv: list[str]) -> int:
    ok = True
    grand = {"passed": 0, "failed": 0, "skipped": 0}
    for arg in argv[1:]:
        report = Path(arg)
        if not report.is_file():
            print(f"{report.stem}: no report ({report} missing)")
            ok = False
            continue
        c = counts(report)
        passed = c["tests"] - c["failed"] - c["skipped"]
        print(f"  {report.stem}: {passed} passed, {c['failed']} failed, {c['skipped']} skipped")
        ok &= passed > 0 and c["failed"] == 0
        grand["passed"] += passed
        grand["failed"] += c["failed"]
        grand["skipped"] += c["skipped"]
    print(f"total: {grand['passed']} passed, {grand['failed']} failed, {grand['skipped']} skipped")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
