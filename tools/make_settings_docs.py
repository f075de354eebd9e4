"""Write the settings part of `.env_template` and the README's settings table from
runtime.settings.SETTINGS, so that the two cannot drift from the settings the code reads.

Only the marked sections are rewritten; the text around them is kept as it is.
tests/project/test_settings_documented.py fails while a committed file differs from this
output.

    .venv/bin/python tools/make_settings_docs.py           # rewrite both files
    .venv/bin/python tools/make_settings_docs.py --check   # exit 1 if either is stale
"""
from __future__ import annotations

import re
import sys
import textwrap
from pathlib import Path

from runtime.settings import SETTINGS

ROOT = Path(__file__).resolve().parent.parent

TEMPLATE = ROOT / ".env_template"
README = ROOT / "README.md"

TEMPLATE_BEGIN = ('# ---- Settings of the jobs and the service (runtime/settings.py, README '
                  '"Configuration") ----\n')
TEMPLATE_END = ("# ---- docker compose only (docker-compose.yml); ignored by runtime/settings.py "
                "----\n")
README_BEGIN = ("<!-- settings table: written by tools/make_settings_docs.py from "
                "runtime/settings.py -->\n")
README_END = "<!-- end of the settings table -->\n"

_LINK = re.compile(r"\[([^\]]+)\]\(#[^)]*\)")
_COMPOSE_NOTE = {
    "env": "",
    "image": "; in compose: the image's path",
    "composed": "; in compose: built per container",
    "mounted": "; in compose: the file mounted",
}


def plain(markdown: str) -> str:
    """Return help text as .env_template shows it: no code marks, README links by title."""
    return _LINK.sub(r'README "\1"', markdown).replace("`", "")


def template_section() -> str:
    lines = ["# Written by tools/make_settings_docs.py from runtime/settings.py: edit there.", ""]
    for setting in SETTINGS:
        lines += textwrap.wrap(plain(setting.help), width=88, initial_indent="# ",
                               subsequent_indent="# ", break_long_words=False,
                               break_on_hyphens=False)
        lines += [f"{setting.name}={setting.default}", ""]
    return "\n".join(lines) + "\n"


def readme_section() -> str:
    lines = ["| Setting | Default | Meaning | Read by |", "|---|---|---|---|"]
    for setting in SETTINGS:
        default = f"`{setting.default}`" if setting.default else "(empty)"
        read_by = ", ".join(setting.used_by) + _COMPOSE_NOTE[setting.compose]
        lines.append(f"| `{setting.name}` | {default} | {setting.help} | {read_by} |")
    return "\n".join(lines) + "\n"


def replace_section(text: str, begin: str, end: str, body: str, name: str) -> str:
    """Return text with what lies between the begin and end lines replaced by body."""
    start = text.find(begin)
    stop = text.find(end, start + len(begin)) if start >= 0 else -1
    if start < 0 or stop < 0:
        raise SystemExit(f"{name}: the marker lines {begin.strip()!r} and {end.strip()!r} "
                         "are missing")
    return text[:start + len(begin)] + body + text[stop:]


def generated() -> dict[Path, str]:
    """Return {file: its text with the generated section brought up to date}."""
    template = TEMPLATE.read_text(encoding="utf-8")
    template = replace_section(template, TEMPLATE_BEGIN, TEMPLATE_END, template_section(),
                               TEMPLATE.name)
    readme = README.read_text(encoding="utf-8")
    readme = replace_section(readme, README_BEGIN, README_END, readme_section(), README.name)
    return {TEMPLATE: template, README: readme}


def stale() -> list[Path]:
    """Return the files whose committed text differs from the generated one."""
    return [path for path, text in generated().items()
            if path.read_text(encoding="utf-8") != text]


def main(argv: list[str]) -> int:
    if argv[1:] == ["--check"]:
        paths = stale()
        for path in paths:
            print(f"{path.name} is out of date: run tools/make_settings_docs.py",
                  file=sys.stderr)
        return 1 if paths else 0
    if argv[1:]:
        print(__doc__, file=sys.stderr)
        return 2
    for path, text in generated().items():
        if path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
