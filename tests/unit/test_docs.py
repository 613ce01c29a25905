"""The docs a newcomer reads stay true to the code."""

from __future__ import annotations

from harness.paths import REPO_ROOT
from restoration_governor.governor.config import setting_docs


def test_every_governor_setting_is_documented():
    text = (REPO_ROOT / "docs" / "governor.md").read_text()
    missing = [d["name"] for d in setting_docs() if f"`{d['name']}`" not in text]
    assert missing == []


def test_readme_gives_the_two_commands_and_the_ci_runs_the_test_one():
    readme = (REPO_ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "make test" in ci
    for doc in ("docs/governor.md", "docs/ddcolor.md", "docs/gpen.md", "docs/web.md"):
        assert doc in readme and (REPO_ROOT / doc).exists(), doc
