"""The documentation: the README is a front door (at most 250 lines, the run and test commands, links that
lead somewhere) and `docs/` builds as an MkDocs site with `--strict`: no broken link or anchor, no page
left out of the navigation."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from markdown.extensions.toc import slugify

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
RUN_COMMAND = ("python3 -m venv .venv && .venv/bin/pip install -r requirements.txt && cd backend && "
               "../.venv/bin/python -m src.main")
TEST_COMMAND = "bash scripts/test.sh"
MAX_README_LINES = 250


def mkdocs_build(config: Path, site: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run([str(Path(sys.executable).with_name("mkdocs")), "build", "--strict", "-f", str(config),
                           "-d", str(site)], cwd=config.parent, env=env, capture_output=True, text=True, timeout=180)


def test_docs_build_strict(tmp_path):
    run = mkdocs_build(ROOT / "mkdocs.yml", tmp_path / "site")
    assert run.returncode == 0 and "WARNING" not in run.stderr, run.stderr[-4000:]
    assert (tmp_path / "site" / "configuration" / "index.html").is_file()


def test_a_broken_link_or_an_orphan_page_fails_the_build(tmp_path):
    """The strict build can fail: the same site with a link to a missing anchor and a page not in the nav."""
    shutil.copytree(ROOT / "docs", tmp_path / "docs")
    shutil.copy(ROOT / "mkdocs.yml", tmp_path / "mkdocs.yml")
    with (tmp_path / "docs" / "cli.md").open("a") as page:
        page.write("\nSee [the rule](honesty.md#no-such-heading).\n")
    (tmp_path / "docs" / "orphan.md").write_text("# Not in the nav\n")
    run = mkdocs_build(tmp_path / "mkdocs.yml", tmp_path / "site")
    assert run.returncode != 0, run.stderr[-2000:]
    assert "no-such-heading" in run.stderr and "orphan.md" in run.stderr, run.stderr[-2000:]


def test_every_docs_page_is_in_the_nav():
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]

    def pages(items) -> set[str]:
        found: set[str] = set()
        for item in items:
            value = next(iter(item.values())) if isinstance(item, dict) else item
            found |= pages(value) if isinstance(value, list) else {value}
        return found

    assert pages(nav) == {path.name for path in (ROOT / "docs").glob("*.md")}


def anchors(page: Path) -> set[str]:
    return {slugify(re.sub(r"[`*]", "", line.lstrip("#").strip()), "-")
            for line in page.read_text().splitlines() if line.startswith("#")}


def test_readme_is_a_front_door():
    text = README.read_text()
    lines = text.splitlines()
    assert len(lines) <= MAX_README_LINES, len(lines)
    assert RUN_COMMAND in lines and TEST_COMMAND in lines  # each alone on its line, as in a code block
    for title in ("## Run it", "## Test it", "## A short tour", "## Documentation"):
        assert title in lines, title
    links = re.findall(r"\]\(([^)#\s]+)(?:#([^)\s]+))?\)", text)
    assert len([path for path, _ in links if path.startswith("docs/")]) >= 10
    for path, anchor in links:
        assert (ROOT / path).exists(), path
        if anchor:
            assert anchor in anchors(ROOT / path), f"{path}#{anchor}"


def test_settings_table_names_the_main_settings():
    """The settings table moved to docs/configuration.md: the settings it names are real ones."""
    sys.path.insert(0, str(ROOT / "backend"))
    from src.config.settings import Settings

    table = [line for line in (ROOT / "docs" / "configuration.md").read_text().splitlines() if line.startswith("| `")]
    named = {name for line in table for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", line.split("|")[1])}
    assert len(named) >= 30 and named <= set(Settings.model_fields), named - set(Settings.model_fields)
