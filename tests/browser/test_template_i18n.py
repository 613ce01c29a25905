"""The four templates in the editor's language: a Chinese browser sees their notes, node titles and group
titles in Chinese (web/lib/template_i18n.mjs), an English one sees them unchanged, and a note the user
edited stays as written. The texts are those of locales/*/main.json "restorationTemplates", whose English
entries tests/unit/test_template_locale.py keeps equal to the templates."""

from __future__ import annotations

import copy
import json

from harness.paths import REPO_ROOT

TEMPLATES = sorted(p.stem for p in (REPO_ROOT / "example_workflows").glob("*.json"))

# Loads a workflow as the template browser does and returns what the editor holds afterwards: the
# titles of nodes and groups and each note's text, as the graph serialises them (what is saved and shown).
LOAD_AND_READ = """async ([wf, name]) => {
  const app = window.comfyAPI.app.app;
  await app.loadGraphData(wf, true, true, name, {openSource: "template"});
  const graph = app.graph.serialize();
  const notes = graph.nodes.filter((n) => n.type === "MarkdownNote" || n.type === "Note");
  const live = app.graph._nodes.filter((n) => n.type === "MarkdownNote" || n.type === "Note");
  return {
    nodes: graph.nodes.length,
    titles: graph.nodes.map((n) => n.title).filter(Boolean).sort(),
    groups: (graph.groups || []).map((g) => g.title),
    notes: notes.map((n) => n.widgets_values[0]),
    widgets: live.map((n) => n.widgets[0].value),
    graph,
  };
}"""


def _section(lang: str) -> dict:
    return json.loads((REPO_ROOT / "locales" / lang / "main.json").read_text(encoding="utf-8"))["restorationTemplates"]


def _workflow(name: str) -> dict:
    return json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text(encoding="utf-8"))


def _expected(entry: dict) -> dict:
    titles = sorted(v for k, v in entry.items() if k.endswith("Title"))
    return {"titles": titles, "groups": [entry["group"]], "notes": [entry["note"]], "widgets": [entry["note"]]}


def _shipped(workflow: dict) -> dict:
    """The texts of the template file itself."""
    notes = [n["widgets_values"][0] for n in workflow["nodes"] if n["type"] in ("MarkdownNote", "Note")]
    return {"titles": sorted(n["title"] for n in workflow["nodes"] if n.get("title")),
            "groups": [g["title"] for g in workflow["groups"]], "notes": notes, "widgets": notes}


def _seen(loaded: dict) -> dict:
    return {k: loaded[k] for k in ("titles", "groups", "notes", "widgets")}


async def test_templates_show_in_chinese_and_stay_english_in_english(comfy_page, gov_http):
    en, zh = _section("en"), _section("zh")
    zh_page = await comfy_page("zh-CN")
    page = zh_page.page
    translated = {}
    for name in TEMPLATES:
        workflow = _workflow(name)
        loaded = await page.evaluate(LOAD_AND_READ, [workflow, name])
        assert loaded["nodes"] == len(workflow["nodes"])
        assert _seen(loaded) == _expected(zh[name]), name
        translated[name] = loaded["graph"]
    await page.wait_for_timeout(300)  # two frames: the note's editor shows its text
    await zh_page.screenshot("zh")

    # A note the user edited keeps its text; the template's titles are still translated.
    name = TEMPLATES[0]
    edited = _workflow(name)
    note = next(n for n in edited["nodes"] if n["type"] == "MarkdownNote")
    note["widgets_values"][0] += "\nMy own remark."
    loaded = await page.evaluate(LOAD_AND_READ, [edited, name])
    assert loaded["notes"] == [note["widgets_values"][0]] == loaded["widgets"]
    assert loaded["groups"] == [zh[name]["group"]] and zh[name]["noteTitle"] in loaded["titles"]
    # A graph of the user's own that merely reuses a title ("How to use") is no template: left alone.
    own = _workflow(TEMPLATES[1])
    own["groups"][0]["title"] = "My photos"
    own_note = next(n for n in own["nodes"] if n["type"] == "MarkdownNote")
    own_note["widgets_values"][0] = "Colour the scans from the attic."
    loaded = await page.evaluate(LOAD_AND_READ, [own, "mine"])
    assert _seen(loaded) == _shipped(own)
    assert zh_page.pack_problems() == []

    comfy = await comfy_page("en-US")
    page = comfy.page
    for name in TEMPLATES:
        workflow = _workflow(name)
        loaded = await page.evaluate(LOAD_AND_READ, [workflow, name])
        assert _seen(loaded) == _shipped(workflow) == _expected(en[name]), name
    # A template saved by a Chinese user opens in English for an English one.
    name = TEMPLATES[2]
    loaded = await page.evaluate(LOAD_AND_READ, [copy.deepcopy(translated[name]), name])
    assert _seen(loaded) == _expected(en[name])
    assert comfy.pack_problems() == []

