"""GPEN's faces-per-chunk plan with and without the core's DynamicVRAM (resident inactive models)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from restoration_governor.nodes import gpen as gpen_nodes
from restoration_governor.restoration.gpen.memory import working_memory

GiB = 1 << 30


class FakeModelManagement:
    """Free memory is 2 GiB until load_models_gpu makes room (evicting resident models): then 20 GiB."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.free = 2 * GiB

    def get_torch_device(self):
        return torch.device("cuda", 0)

    def get_free_memory(self, device):
        self.calls.append(("free", self.free))
        return self.free

    def load_models_gpu(self, patchers, memory_required=0, force_full_load=False):
        self.calls.append(("load", memory_required))
        self.free = 20 * GiB


@pytest.fixture
def planned(monkeypatch):
    def plan(dynamic: bool):
        mm = FakeModelManagement()
        monkeypatch.setattr(gpen_nodes.comfy_bridge, "model_management", lambda: mm)
        monkeypatch.setattr(gpen_nodes, "has_dynamic_vram", lambda _mm: dynamic)
        model = SimpleNamespace(size=512, managed=SimpleNamespace(size_bytes=lambda: 300 << 20))
        chunk, device = gpen_nodes._load_and_plan(model, ["patcher"], faces_hint=64, with_parser=True)
        return chunk, device, mm.calls
    return plan


def test_under_dynamic_vram_room_is_asked_for_first_and_the_chunk_planned_after(planned):
    chunk, device, calls = planned(True)
    assert calls[0] == ("load", working_memory(512, 16, True))  # the largest useful chunk on a GPU
    assert calls[1] == ("free", 20 * GiB)
    assert chunk == int(20 * GiB * 0.8 // working_memory(512, 1, True)) == 10 and device.type == "cuda"


def test_without_it_the_plan_comes_from_free_memory_before_loading(planned):
    chunk, _, calls = planned(False)
    per_face = working_memory(512, 1, True)
    assert (2 * GiB - (300 << 20)) * 0.8 < per_face  # not even one face fits by the reading before loading
    assert calls == [("free", 2 * GiB), ("load", per_face)]
    assert chunk == 1
