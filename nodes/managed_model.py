"""Let ComfyUI's model management own our plain-torch models.

A model wrapped here is loaded to the GPU through ``load_models_gpu`` (so other models are
offloaded to make room, and ours is offloaded when they need the GPU) and is listed with every
other loaded model. ``force_full_load=True`` because our architectures use plain ``nn.Conv2d`` /
``nn.Linear`` layers, which ComfyUI's partial (low-VRAM) loading would leave on the CPU.
"""

from __future__ import annotations

import torch

from . import comfy_bridge


class ManagedModel:
    """An ``nn.Module`` plus the ComfyUI ``ModelPatcher`` that moves it between devices."""

    def __init__(self, module: torch.nn.Module) -> None:
        mm = comfy_bridge.model_management()
        self.module = module.eval()
        self.load_device = mm.get_torch_device()
        self.offload_device = mm.unet_offload_device()
        self.module.to(self.offload_device)
        self.patcher = comfy_bridge.model_patcher().ModelPatcher(
            self.module, load_device=self.load_device, offload_device=self.offload_device
        )

    def load(self, working_memory: int = 0) -> torch.device:
        """Put the model on its device, asking ComfyUI to free ``working_memory`` extra bytes too."""
        comfy_bridge.model_management().load_models_gpu(
            [self.patcher], memory_required=working_memory, force_full_load=True
        )
        return self.load_device

    def size_bytes(self) -> int:
        return comfy_bridge.model_management().module_size(self.module)
