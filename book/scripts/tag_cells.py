#!/usr/bin/env python3
"""Hide papermill's cells from the pages: ``python book/scripts/tag_cells.py NOTEBOOK``.

Adds the ``remove-cell`` tag (input and output removed from the page, still executed and
kept in the notebook) to the cell tagged ``parameters`` and to papermill's
``injected-parameters`` cell, in place.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HIDE = {"parameters", "injected-parameters"}


def tag(path: Path) -> int:
    nb = json.loads(path.read_text(encoding="utf-8"))
    n = 0
    for cell in nb.get("cells", []):
        tags = cell.setdefault("metadata", {}).setdefault("tags", [])
        if HIDE & set(tags) and "remove-cell" not in tags:
            tags.append("remove-cell")
            n += 1
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return n


if __name__ == "__main__":
    for arg in sys.argv[1:]:
        tag(Path(arg))
