"""The four templates as a first-time user meets them in the graph editor (1400 x 860): a thumbnail
on each template card, every node and group clear of the toolbars, the grayscale example photo."""

from __future__ import annotations

import json

import pytest
from harness.paths import PACK_FOLDER_NAME, REPO_ROOT
from harness.screenshots import small_png

TEMPLATES = ("DDColor Person Restore", "DDColor Building Restore", "GPEN Portrait Enhance",
             "Old Photo Restore (GPEN + DDColor)")

# For each node and group: nine points along its title bar and its bottom corners, in screen pixels, and
# what the browser has at each point. Anything but the canvas (or a widget of the node itself) is a
# toolbar or a sidebar covering it — or the point is off screen. Frontend 1.58's minimap is left out: it
# is a closable overlay in the bottom-right corner that covers a corner of any graph filling the view
# (1.58 re-fits a template on open), so it says nothing about the template's layout. For the same reason
# a group's title strip may sit under 1.58's floating toolbars: there only the nodes are checked.
COVERED = """(withGroups) => {
  const app = window.comfyAPI.app.app, ds = app.canvas.ds, canvas = app.canvas.canvas;
  const box = canvas.getBoundingClientRect(), title = window.LiteGraph?.NODE_TITLE_HEIGHT ?? 30;
  const toScreen = (x, y) => [box.left + (x + ds.offset[0]) * ds.scale, box.top + (y + ds.offset[1]) * ds.scale];
  const items = app.graph._nodes.map(n => [n.title || n.type, n.pos[0], n.pos[1] - title, n.size[0], n.size[1] + title])
    .concat(withGroups ? (app.graph._groups || []).map(g => ["group " + g.title, ...g._bounding.slice(0, 4)]) : []);
  const problems = [];
  for (const [name, x, y, w, h] of items) {
    const points = [[x + 6, y + h - 6], [x + w - 6, y + h - 6]];
    for (let i = 0; i <= 8; i++) points.push([x + 6 + (w - 12) * i / 8, y + 6]);
    for (const [px, py] of points) {
      const [sx, sy] = toScreen(px, py);
      const hit = document.elementFromPoint(sx, sy);
      const onNode = hit && hit !== canvas && hit.closest(".dom-widget, .dom-widget-container, [class*=dom-widget]");
      const onMinimap = hit && hit.closest("[class*=minimap]");
      if (hit !== canvas && !onNode && !onMinimap) {
        problems.push(`${name} at (${Math.round(sx)}, ${Math.round(sy)}) is under ${hit ? hit.tagName + "." + String(hit.className).slice(0, 60) : "nothing (off screen)"}`);
      }
    }
  }
  return problems;
}"""


@pytest.mark.parametrize("name", TEMPLATES)
async def test_a_template_opens_with_every_node_in_view(comfy_page, gov_http, name):
    comfy = await comfy_page("en-US")
    page = comfy.page
    assert page.viewport_size == {"width": 1400, "height": 860}
    workflow = json.loads((REPO_ROOT / "example_workflows" / f"{name}.json").read_text())
    await page.evaluate("([wf, name]) => window.comfyAPI.app.app.loadGraphData(wf, true, true, name, "
                        "{openSource: 'template'})", [workflow, name])
    await page.wait_for_function(f"window.comfyAPI.app.app.graph._nodes.length === {len(workflow['nodes'])}")
    await page.wait_for_timeout(300)  # two frames: DOM widgets take their places
    problems = await page.evaluate(COVERED, not comfy.new_frontend)
    if problems:
        await comfy.screenshot("covered")
    assert problems == []
    loader = next(n for n in workflow["nodes"] if n["type"] in ("LoadImage", "RestorationLoadImage"))
    assert loader["widgets_values"][0] == "restoration-example.png"


async def test_every_template_card_has_its_own_thumbnail_and_the_example_photo_is_gray(comfy_page, gov_http,
                                                                                        comfy_server):
    comfy = await comfy_page("en-US")
    page = comfy.page
    listed = await (await page.request.get(comfy_server.url + "/api/workflow_templates")).json()
    assert sorted(listed[PACK_FOLDER_NAME]) == sorted(TEMPLATES)
    sizes = set()
    for name in TEMPLATES:
        r = await page.request.get(f"{comfy_server.url}/api/workflow_templates/{PACK_FOLDER_NAME}/{name}.jpg")
        assert r.ok and r.headers["content-type"] == "image/jpeg"
        body = await r.body()
        assert body[:3] == b"\xff\xd8\xff" and len(body) < 80_000
        sizes.add(body)
    assert len(sizes) == 4, "four different pictures, not one repeated"
    await page.evaluate("window.comfyAPI.app.app.extensionManager.command.execute('Comfy.BrowseTemplates')")
    await page.get_by_role("dialog").get_by_text(PACK_FOLDER_NAME, exact=True).first.click()
    dialog = page.get_by_role("dialog")
    for name in TEMPLATES:
        await dialog.get_by_text(name, exact=True).first.wait_for()
    # The cards fetch the thumbnails and show them as blob: images; four of them must have pixels.
    await page.wait_for_function(
        "[...document.querySelectorAll('[role=dialog] img')].filter(i => i.complete && i.naturalWidth > 0)"
        ".length >= 4")
    await page.wait_for_timeout(500)
    png = await page.screenshot(clip={"x": 300, "y": 190, "width": 1040, "height": 450})
    small_png(png, REPO_ROOT / "docs" / "images" / "template-cards.png")
    photo = await page.request.get(f"{comfy_server.url}/view?filename=restoration-example.png&type=input")
    assert photo.ok
    from io import BytesIO

    from PIL import Image

    with Image.open(BytesIO(await photo.body())) as img:
        assert img.mode == "L" and max(img.size) <= 512
