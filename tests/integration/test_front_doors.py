"""What newer cores and front doors add in front of the governor: the assets upload route and a proxy that
owns the Authorization header."""

from __future__ import annotations

import aiohttp
from harness.client import ComfyClient
from harness.governor import DEFAULTS

CAP = 2000
SLACK = 256 * 1024  # multipart framing allowance on top of the file size (governor/http_api.py)


async def _post_file(c: ComfyClient, path: str, field: str, size: int):
    form = aiohttp.FormData()
    form.add_field(field, b"\0" * size, filename="weights.bin", content_type="application/octet-stream")
    return await c.request("POST", path, data=form)


async def test_assets_uploads_get_the_same_size_cap_as_image_uploads(gov_client: ComfyClient):
    c = gov_client
    (await c.patch("/governor/config", {"upload_max_bytes": CAP})).ok()
    for path, field in (("/api/assets", "file"), ("/upload/image", "image")):
        refused = await _post_file(c, path, field, CAP + SLACK + 1000)
        assert refused.status == 413, (path, refused.status)
        assert refused.body["error"]["type"] == "upload_too_large"
        assert f"the limit is {CAP} bytes" in refused.body["error"]["details"]
        assert refused.body["node_errors"] == {}
    small = await _post_file(c, "/api/assets", "file", 100)
    assert small.status in (404, 405), "under the cap the request reaches the core (0.3.75 has no assets route)"


async def test_x_governor_token_wins_over_a_front_doors_bearer_token(gov_client: ComfyClient):
    c = gov_client
    token = "governor-admin-token"
    (await c.patch("/governor/config", {"admin_token": token})).ok()
    front_door = {"Authorization": "Bearer the-proxys-own-token"}
    try:
        behind_proxy = await c.post("/governor/pause", headers={**front_door, "X-Governor-Token": token})
        assert behind_proxy.status == 200, behind_proxy.body
        (await c.post("/governor/resume", headers={"X-Governor-Token": token})).ok()
        wrong_own = await c.post("/governor/pause", headers={"Authorization": f"Bearer {token}",
                                                              "X-Governor-Token": "stale"})
        assert wrong_own.status == 401, "the pack's own header is the one that counts when both are sent"
        assert (await c.post("/governor/pause", headers=front_door)).status == 401
        (await c.post("/governor/pause", headers={"Authorization": f"Bearer {token}"})).ok()  # no proxy: still fine
    finally:
        (await c.patch("/governor/config", {**DEFAULTS, "admin_token": None},
                       headers={"X-Governor-Token": token})).ok()
        (await c.post("/governor/resume")).ok()
