"""Every setting is documented: in the README's configuration table and in .env_template,
both as tools/make_settings_docs.py writes them from the settings table."""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from runtime.settings import SETTINGS

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
TEMPLATE = (ROOT / ".env_template").read_text(encoding="utf-8").splitlines()


def readme_row(name: str) -> list[str] | None:
    """Return the cells of the README table row for the setting, if there is one."""
    for line in README.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("|") and cells and cells[0] == f"`{name}`":
            return cells
    return None


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_setting_is_in_the_readme_table_with_its_default(setting):
    cells = readme_row(setting.name)
    assert cells is not None, f"{setting.name} missing from README's configuration table"
    assert len(cells) >= 3 and cells[2], f"{setting.name} has no meaning in the README"
    expected = f"`{setting.default}`" if setting.default else "(empty)"
    assert cells[1] == expected, f"README gives {cells[1]} as default of {setting.name}"


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.name)
def test_setting_is_in_the_env_template_with_a_comment(setting):
    lines = [i for i, line in enumerate(TEMPLATE) if line == f"{setting.name}={setting.default}"]
    assert lines, f".env_template lacks the line {setting.name}={setting.default}"
    assert TEMPLATE[lines[0] - 1].startswith("# "), f"{setting.name} has no comment"


def test_every_template_variable_is_explained_in_the_readme():
    names = [line.split("=", 1)[0] for line in TEMPLATE if re.match(r"[A-Z_]+=", line)]
    assert names
    for name in names:
        assert f"`{name}`" in README, f"{name} from .env_template is not in README.md"


def test_generated_sections_match_the_settings_table():
    """The README's table and .env_template's settings are tools/make_settings_docs.py's
    output for the SETTINGS table as it is now."""
    spec = importlib.util.spec_from_file_location("make_settings_docs",
                                                  ROOT / "tools" / "make_settings_docs.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    assert tool.stale() == [], "run tools/make_settings_docs.py and commit its output"
