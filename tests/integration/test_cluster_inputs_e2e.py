"""Cluster mode end to end: a photo uploaded to server s1 is used by a prompt that s2 runs.

Two real ComfyUI servers (separate input folders) in cluster mode on a private ``redis-server``.
The client uploads two photos to s1 and queues two prompts there that load them; both workers take
one. The prompt s2 runs must succeed: s2 fetched the photo from s1 into its own input folder.
"""

from __future__ import annotations

import io

import aiohttp
import pytest
from harness.client import ComfyClient
from PIL import Image
from test_cluster_relay_e2e import _alive, _ended, servers  # noqa: F401  (module fixture)

pytestmark = pytest.mark.integration


def _png(color: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (24, 16), color).save(out, "PNG")
    return out.getvalue()


def _graph(photo: str, tag: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": photo}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": f"in_{tag}"}},
        "3": {"class_type": "RGTestSleep", "inputs": {"seconds": 1.5, "steps": 3, "tag": tag}},
    }


async def test_a_photo_uploaded_to_one_server_is_used_where_the_prompt_runs(servers):  # noqa: F811
    s1, s2 = servers["s1"], servers["s2"]
    photos = {f"photo_{i}.png": _png((40 * i, 200, 90)) for i in range(2)}
    async with ComfyClient(s1.url) as c1:
        await _alive(c1, 2)
        for name, data in photos.items():
            form = aiohttp.FormData()
            form.add_field("image", data, filename=name, content_type="image/png")
            form.add_field("subfolder", "uploads")
            async with c1.session.post(f"{s1.url}/upload/image", data=form) as r:
                assert r.status == 200, await r.text()
        events = await c1.events()
        ids = {await c1.queue_prompt(_graph(f"uploads/{name} [input]", name[:-4])): name for name in photos}
        for pid in ids:
            await events.wait_for(_ended(pid), timeout=90)
        ran_on = {pid: (await c1.get(f"/governor/jobs/{pid}")).ok().body for pid in ids}
        assert {j["server"] for j in ran_on.values()} == {"s1", "s2"}, ran_on
        assert {j["state"] for j in ran_on.values()} == {"success"}, ran_on
        remote = next(name for pid, name in ids.items() if ran_on[pid]["server"] == "s2")
        assert (s2.input_dir / "uploads" / remote).read_bytes() == photos[remote]
