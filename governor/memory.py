"""How much memory is in use on the device ComfyUI runs on, and whether a prompt may start.

The probe chain reads the whole device, other processes included: NVML first (``pynvml`` from
nvidia-ml-py, by device UUID so CUDA_VISIBLE_DEVICES remapping cannot fool it), then
``torch.cuda.mem_get_info``, then system RAM through ``psutil`` on CPU-only machines. The gate
is open when used/total is at most ``max_used_fraction``, at least ``min_free_bytes`` are free
and the free memory covers the workflow's learned peak with ``learned_margin``.

Where the core keeps inactive models resident in VRAM until something needs the room (DynamicVRAM,
comfy-aimdo), the device looks full of weights the next prompt may evict; the chain is then given an
``evictable`` function (bytes of this instance's resident models) and the gate counts them as free.
Readings keep the device's real ``used`` (learned peaks and metrics are measured on it); only the
gate decision adds ``evictable`` to what is available.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from .config import GovernorConfig

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MemoryReading:
    used: int
    total: int
    source: str  # nvml | torch | system
    evictable: int = 0  # bytes of this instance's resident, inactive models (DynamicVRAM), part of ``used``

    @property
    def free(self) -> int:
        return max(0, self.total - self.used)

    @property
    def used_fraction(self) -> float:
        return self.used / self.total if self.total else 0.0

    @property
    def available(self) -> int:
        """Free bytes plus the resident models a new prompt may evict (the gate's view)."""
        return min(self.total, self.free + self.evictable)

    @property
    def held_fraction(self) -> float:
        """The fraction in use that nothing will evict for a new prompt (the gate's view)."""
        return max(0, self.used - self.evictable) / self.total if self.total else 0.0


class MemoryProbe(Protocol):
    name: str

    def read(self) -> MemoryReading: ...


class NvmlProbe:
    name = "nvml"

    def __init__(self, device_uuid: str | None = None, device_index: int = 0) -> None:
        import pynvml

        pynvml.nvmlInit()
        self._nvml = pynvml
        if device_uuid:
            uuid = device_uuid if device_uuid.startswith(("GPU-", "MIG-")) else f"GPU-{device_uuid}"
            self._handle = pynvml.nvmlDeviceGetHandleByUUID(uuid)
        else:
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(device_index)

    def read(self) -> MemoryReading:
        info = self._nvml.nvmlDeviceGetMemoryInfo(self._handle)
        return MemoryReading(int(info.used), int(info.total), self.name)


class TorchCudaProbe:
    name = "torch"

    def __init__(self, device_index: int = 0) -> None:
        self.device_index = device_index

    def read(self) -> MemoryReading:
        import torch

        free, total = torch.cuda.mem_get_info(self.device_index)
        return MemoryReading(int(total - free), int(total), self.name)


class SystemMemoryProbe:
    name = "system"

    def read(self) -> MemoryReading:
        import psutil

        vm = psutil.virtual_memory()
        return MemoryReading(int(vm.total - vm.available), int(vm.total), self.name)


class ProbeChain:
    """Reads through the first probe that works; a probe that fails is dropped, the next one used."""

    def __init__(self, probes: list[MemoryProbe], evictable: Callable[[], int] | None = None) -> None:
        self.probes = list(probes)
        self.evictable = evictable

    def read(self) -> MemoryReading | None:
        """The first working probe's reading; with ``evictable``, the reading says how many of its used
        bytes are this instance's resident models (at most ``used``; 0 on system RAM)."""
        while self.probes:
            try:
                reading = self.probes[0].read()
            except Exception as e:  # a driver hiccup must not stop the queue
                log.warning("memory probe %s failed (%s); falling back", self.probes[0].name, e)
                self.probes.pop(0)
                continue
            return self._without_evictable(reading)
        return None

    def _without_evictable(self, reading: MemoryReading) -> MemoryReading:
        if self.evictable is None or reading.source == "system":
            return reading
        try:
            evictable = min(max(0, int(self.evictable())), reading.used)
        except Exception as e:  # never let the core's bookkeeping stop the queue: count nothing as evictable
            log.warning("could not read resident model sizes (%s); counting none as free", e)
            return reading
        return replace(reading, evictable=evictable)


def build_probe_chain(cuda_index: int | None, cuda_uuid: str | None = None,
                      evictable: Callable[[], int] | None = None) -> ProbeChain:
    """NVML -> torch -> system RAM for a CUDA device; system RAM alone without one. ``evictable``:
    bytes of resident models the gate counts as free (DynamicVRAM; never applied to system RAM)."""
    probes: list[MemoryProbe] = []
    if cuda_index is not None:
        try:
            probes.append(NvmlProbe(cuda_uuid, cuda_index))
        except Exception as e:
            log.info("NVML unavailable (%s); using torch.cuda.mem_get_info", e)
        probes.append(TorchCudaProbe(cuda_index))
    probes.append(SystemMemoryProbe())
    return ProbeChain(probes, evictable if cuda_index is not None else None)


@dataclass(frozen=True)
class GateDecision:
    open: bool
    why: str
    reading: MemoryReading | None
    required_free: int

    def as_dict(self) -> dict:
        r = self.reading
        return {
            "open": self.open, "why": self.why, "required_free": self.required_free,
            "used": r.used if r else None, "total": r.total if r else None, "source": r.source if r else None,
            "evictable": r.evictable if r else None,
        }


def evaluate_gate(reading: MemoryReading | None, config: GovernorConfig, learned_peak: int | None) -> GateDecision:
    if not config.memory_gate:
        return GateDecision(True, "memory gate disabled", reading, 0)
    if reading is None:
        return GateDecision(True, "no memory probe available", None, 0)
    required = config.min_free_bytes
    if learned_peak:
        required = max(required, int(learned_peak * (1 + config.learned_margin)))
    resident = f" (besides {_mib(reading.evictable)} of evictable models)" if reading.evictable else ""
    if reading.held_fraction > config.max_used_fraction:
        return GateDecision(False, f"{reading.held_fraction:.0%} of {reading.source} memory in use{resident}, above "
                                   f"max_used_fraction {config.max_used_fraction:.0%}", reading, required)
    if reading.available < required:
        return GateDecision(False, f"{_mib(reading.available)} free{resident and ' with evictable models'}, this "
                                   f"workflow needs {_mib(required)}", reading, required)
    return GateDecision(True, "enough free memory", reading, required)


def _mib(n: int) -> str:
    return f"{n / (1 << 20):.0f} MiB"
