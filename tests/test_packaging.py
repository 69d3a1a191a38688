"""The package carries its own data: the templates are a real directory inside it, shipped in the wheel."""

from __future__ import annotations

from pathlib import Path

import sheetgpt

ROOT = Path(__file__).resolve().parent.parent


def test_templates_are_a_real_directory_inside_the_package_and_its_package_data():
    here = Path(sheetgpt.__file__).parent / "templates"
    assert here.is_dir() and not here.is_symlink()
    assert {"regions.ini", "corpus.ini"} <= {p.name for p in here.iterdir()}
    assert not (ROOT / "templates").exists()  # one copy, the package's
    package_data = (ROOT / "pyproject.toml").read_text().split("[tool.setuptools.package-data]")[1]
    assert '"templates/*"' in package_data.split("[")[1]  # sheetgpt = [..., "templates/*"]
