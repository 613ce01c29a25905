"""The templates' texts in locales/*/main.json ("restorationTemplates") stay in step with the templates.

The web extension shows a template in Chinese by replacing each text that is still exactly the
English one of locales/en/main.json (web/lib/template_i18n.mjs). So the English entries must be the
templates' own texts, and every language must have an entry for each: a template whose note or title
changes without its locale entries fails here, and the Chinese copy cannot silently go stale.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TEMPLATES = sorted((REPO / "example_workflows").glob("*.json"))
SECTION = "restorationTemplates"
NOTE_TYPES = ("MarkdownNote", "Note")


def _section(lang: str) -> dict:
    return json.loads((REPO / "locales" / lang / "main.json").read_text(encoding="utf-8"))[SECTION]


def _shipped_texts(path: Path) -> list[str]:
    """Every text the extension may replace: node titles, note bodies, group titles."""
    workflow = json.loads(path.read_text(encoding="utf-8"))
    texts = [g["title"] for g in workflow.get("groups", [])]
    for node in workflow["nodes"]:
        if node.get("title"):
            texts.append(node["title"])
        if node["type"] in NOTE_TYPES:
            texts.append(node["widgets_values"][0])
    return texts


def test_four_templates_and_one_locale_entry_each():
    assert len(TEMPLATES) == 4
    assert sorted(_section("en")) == sorted(p.stem for p in TEMPLATES)


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_english_entries_are_exactly_the_templates_texts(path: Path):
    entry = _section("en")[path.stem]
    assert sorted(_shipped_texts(path)) == sorted(entry.values()), (
        f"{path.name} and locales/en/main.json {SECTION}[{path.stem!r}] differ: change both, and "
        "locales/zh/main.json with them")
    assert entry["note"] in _shipped_texts(path) and entry["group"] in _shipped_texts(path)  # what recognises it


@pytest.mark.parametrize("path", TEMPLATES, ids=lambda p: p.stem)
def test_chinese_has_every_element_translated(path: Path):
    en, zh = _section("en")[path.stem], _section("zh")[path.stem]
    assert sorted(zh) == sorted(en)
    for element, text in zh.items():
        assert text.strip() and text != en[element], f"{path.stem}.{element} is not translated"
        assert any("\u4e00" <= ch <= "\u9fff" for ch in text), f"{path.stem}.{element} has no Chinese"
    # Markdown structure kept: same heading and list numbering, and the file and folder names unchanged.
    for marker in ("## ", "\n1. ", "\n2. ", "\n3. "):
        assert marker in zh["note"]
    for word in [w for w in en["note"].split("`")[1::2]]:
        assert f"`{word}`" in zh["note"], f"{path.stem}: `{word}` missing from the Chinese note"
