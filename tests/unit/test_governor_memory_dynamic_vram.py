"""The memory gate under DynamicVRAM (resident models count as available) and the core feature checks
(governor/memory.py, governor/comfy_features.py, governor/prompt_ids.py), with fakes of the core."""

from __future__ import annotations

import types

import pytest
from governor_fakes import FakeProbe
from restoration_governor.governor import comfy_features
from restoration_governor.governor.config import GovernorConfig
from restoration_governor.governor.errors import GovernorError
from restoration_governor.governor.memory import ProbeChain, evaluate_gate
from restoration_governor.governor.prompt_ids import check_prompt_id

GiB = 1 << 30
UUID = "0b0c9a4e-62a2-4c53-9c0c-5a7a1c8a0e01"


class Loaded:
    def __init__(self, device: str, size: int) -> None:
        self.device, self.size = device, size

    def model_loaded_memory(self) -> int:
        return self.size


def fake_mm(*, dynamic: bool, models=()) -> types.SimpleNamespace:
    mm = types.SimpleNamespace(current_loaded_models=list(models), get_torch_device=lambda: _Device())
    if dynamic:
        mm.dynamic_vram = True
    return mm


class _Device:
    type = "cuda"

    def __str__(self) -> str:
        return "cuda:0"


def test_resident_models_of_this_instance_count_as_available_under_dynamic_vram():
    mm = fake_mm(dynamic=True, models=[Loaded("cuda:0", 30 * GiB), Loaded("cuda:0", 10 * GiB),
                                       Loaded("cpu", 50 * GiB)])
    evictable = comfy_features.dynamic_vram_evictable(mm)
    assert evictable is not None and evictable() == 40 * GiB  # the CPU copy is not VRAM
    config = GovernorConfig(max_used_fraction=0.8)
    probe = FakeProbe(used=90 * GiB, total=100 * GiB)  # NVML: resident weights look used
    closed = evaluate_gate(ProbeChain([probe]).read(), config, learned_peak=25 * GiB)
    assert not closed.open and "90%" in closed.why
    reading = ProbeChain([probe], evictable).read()
    assert (reading.used, reading.evictable, reading.available) == (90 * GiB, 40 * GiB, 50 * GiB)
    decision = evaluate_gate(reading, config, learned_peak=25 * GiB)  # 25 GiB * 1.2 = 30 GiB <= 50 GiB
    assert decision.open and decision.as_dict()["evictable"] == 40 * GiB
    too_big = evaluate_gate(reading, config, learned_peak=45 * GiB)
    assert not too_big.open and "50 GiB" not in too_big.why and "51200 MiB free" in too_big.why


def test_old_cores_and_broken_bookkeeping_change_nothing():
    assert comfy_features.dynamic_vram_evictable(fake_mm(dynamic=False, models=[Loaded("cuda:0", GiB)])) is None
    probe = FakeProbe(used=90 * GiB, total=100 * GiB)

    def broken() -> int:
        raise RuntimeError("model torn down")

    reading = ProbeChain([probe], broken).read()
    assert (reading.used, reading.evictable, reading.available) == (90 * GiB, 0, 10 * GiB)
    probe.name = "system"  # RAM on a CPU-only machine: never counted
    assert ProbeChain([probe], lambda: 40 * GiB).read().evictable == 0
    assert ProbeChain([FakeProbe(used=GiB, total=100 * GiB)], lambda: 40 * GiB).read().evictable == GiB


def test_the_cores_job_id_rule_is_used_when_the_core_has_it(monkeypatch):
    assert comfy_features.core_job_id_rule() is None  # 0.3.75 has no comfy_execution.jobs
    assert check_prompt_id("my-prompt.1", None) == "my-prompt.1"  # today's rule on old cores

    def validate_job_id(job_id: str) -> bool:  # core 0.4x: canonical lowercase UUIDs only
        import uuid
        try:
            return str(uuid.UUID(job_id)) == job_id
        except ValueError:
            return False

    monkeypatch.setitem(__import__("sys").modules, "comfy_execution.jobs",
                        types.SimpleNamespace(validate_job_id=validate_job_id))
    rule = comfy_features.core_job_id_rule()
    assert rule is validate_job_id
    assert check_prompt_id(UUID, rule) == UUID
    for bad in ("my-prompt.1", UUID.upper(), 42):
        with pytest.raises(GovernorError) as e:
            check_prompt_id(bad, rule)
        assert e.value.status == 400 and e.value.body()["error"]["type"] == "invalid_prompt_id"


def test_a_core_rule_that_raises_is_a_400_too():
    def strict(job_id: str) -> None:
        raise ValueError("not a uuid")

    with pytest.raises(GovernorError) as e:
        check_prompt_id(UUID, strict)
    assert e.value.status == 400
