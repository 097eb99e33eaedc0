"""The README's verdict table is the one the stored results give (scripts/update_readme.py)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("update_readme", ROOT / "scripts" / "update_readme.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_readme_verdict_table_is_up_to_date(capsys) -> None:
    assert _script().main(["--check"]) == 0, capsys.readouterr().out


def test_the_check_fails_on_a_stale_table(tmp_path, monkeypatch) -> None:
    mod = _script()
    stale = tmp_path / "README.md"
    stale.write_text(f"intro\n{mod.START}\nold table\n{mod.END}\nrest\n", encoding="utf-8")
    monkeypatch.setattr(mod, "README", stale)
    assert mod.main(["--check"]) == 1
    assert mod.main([]) == 0
    text = stale.read_text(encoding="utf-8")
    assert text.startswith("intro\n") and text.endswith("rest\n") and "old table" not in text
    assert mod.main(["--check"]) == 0
