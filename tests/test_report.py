"""The README's result tables are exactly what ``benchmarks/report.py`` prints from the committed
results files: a hand-edited number, or a re-measured file without the README updated, fails here."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def readme_tables(text: str) -> list[str]:
    """Every markdown table of ``text``: runs of lines starting with ``|``."""
    return [m.group(0).rstrip("\n") for m in re.finditer(r"(?m)(?:^\|.*\n?)+", text)]


def test_every_printed_table_is_in_the_readme(report):
    readme = (ROOT / "README.md").read_text()
    for name, table in report.tables().items():
        assert f"<!-- {name} -->\n{table}\n" in readme, f"README table {name!r} differs from benchmarks/report.py"


def test_every_readme_table_is_printed(report):
    readme = (ROOT / "README.md").read_text()
    printed = set(report.tables().values())
    for table in readme_tables(readme):
        assert table in printed, f"README table not printed by benchmarks/report.py:\n{table}"

