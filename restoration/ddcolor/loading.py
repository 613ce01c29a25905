"""Reading a DDColor checkpoint: detection and model building through spandrel.

spandrel + spandrel_extra_arches hold the architecture the ComfyUI ecosystem uses (its model code
is identical to the official one: bit-identical outputs, models.md 1.4). spandrel is used only to
detect and build the model; the pipeline calls the ``nn.Module`` itself, because spandrel's call
API runs at 256 px, one image at a time.

The loader is strict where the official one is lax: it accepts the release container
(``{'params': sd}``), drops exactly the two ``encoder.arch.head_cls`` keys some files carry, and
then every key must fit, so a truncated, foreign or mismatched file fails with a message that names
the file and what is wrong instead of running with missing weights.
"""

from __future__ import annotations

import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import short_type_name
from .checkpoints import OFFICIAL_CHECKPOINTS

HEAD_CLS_KEYS = ("encoder.arch.head_cls.weight", "encoder.arch.head_cls.bias")
_CONTAINER_KEYS = ("params", "params_ema", "state_dict", "model")
_SUPPORTED_ENCODERS = ("convnext-t", "convnext-s", "convnext-b", "convnext-l")


@short_type_name
class DDColorLoadError(ValueError):
    """A checkpoint that cannot be used; the message names the file and the problem."""


@dataclass
class LoadedDDColor:
    module: torch.nn.Module
    encoder: str
    path: Path
    parameters: int

    @property
    def description(self) -> str:
        return f"DDColor {self.encoder} ({self.parameters / 1e6:.1f} M parameters) from {self.path.name}"


def load_ddcolor(path: str | os.PathLike[str]) -> LoadedDDColor:
    """Read, check and build the DDColor model in ``path`` (on the CPU, eval mode, float32)."""
    path = Path(path)
    state_dict = read_state_dict(path)
    arch = _ddcolor_arch()
    if not arch.detect(state_dict):
        raise DDColorLoadError(f"{path.name} is not a DDColor checkpoint: {_what_it_is(state_dict)}")
    try:
        with torch.random.fork_rng(devices=[]):  # the constructor runs a random dummy forward
            descriptor = arch.load(dict(state_dict))
    except RuntimeError as e:  # load_state_dict: missing / unexpected keys, shape mismatches
        raise DDColorLoadError(f"{path.name} looks like DDColor but its weights do not fit the architecture "
                               f"they describe ({_load_problems(str(e))}); the file is incomplete or a variant "
                               f"this node does not know") from e
    except (KeyError, ValueError) as e:
        raise DDColorLoadError(f"{path.name} looks like DDColor but is incomplete or unusual: {e}") from e
    module = descriptor.model
    encoder = next((t for t in descriptor.tags if t in _SUPPORTED_ENCODERS), "unknown")
    if getattr(module, "num_output_channels", None) != 2 or "MultiScaleColorDecoder" not in descriptor.tags:
        raise DDColorLoadError(f"{path.name} is a DDColor variant this node cannot run "
                               f"({', '.join(descriptor.tags)}): the released models predict 2 channels (ab) "
                               f"with the MultiScaleColorDecoder")
    module.eval().requires_grad_(False)
    return LoadedDDColor(module=module, encoder=encoder, path=path,
                         parameters=sum(p.numel() for p in module.parameters()))


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The state dict inside ``path``: release container unwrapped, ``module.`` prefix and head_cls removed."""
    if not path.is_file():
        raise DDColorLoadError(f"{path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise DDColorLoadError(f"{path.name} is empty (0 bytes){_official_hint(path)}")
    try:
        if path.suffix.lower() == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path), device="cpu")
        else:
            raw = _torch_load(path)
    except pickle.UnpicklingError as e:
        raise DDColorLoadError(f"{path.name} holds Python objects other than tensors, which are not loaded for "
                               f"safety ({_first_lines(str(e), 1)})") from e
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile, ValueError) as e:
        raise DDColorLoadError(f"{path.name} cannot be read ({size:,} bytes): it is truncated or not a PyTorch / "
                               f"safetensors checkpoint ({_first_lines(str(e), 1)}){_official_hint(path)}") from e
    state_dict = _unwrap(raw, path)
    if all(k.startswith("module.") for k in state_dict):
        state_dict = {k[len("module."):]: v for k, v in state_dict.items()}
    for key in HEAD_CLS_KEYS:
        state_dict.pop(key, None)
    return state_dict


def _torch_load(path: Path) -> object:
    """``torch.load`` memory-mapped when the file allows it: the weights are then read from the page
    cache while they are copied into the model, instead of being held twice in RAM (912 MB each)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError as e:
        if "mmap" not in str(e):
            raise
        return torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) format


def _unwrap(raw: object, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(raw, Mapping):
        for key in _CONTAINER_KEYS:
            inner = raw.get(key)
            if isinstance(inner, Mapping):
                raw = inner
                break
    if not isinstance(raw, Mapping) or not raw or not all(isinstance(v, torch.Tensor) for v in raw.values()):
        kind = type(raw).__name__ if not isinstance(raw, Mapping) else f"a dict with keys {sorted(raw)[:5]}"
        raise DDColorLoadError(f"{path.name} does not contain a model state dict (found {kind})")
    return dict(raw)


def _ddcolor_arch():
    from spandrel_extra_arches.architectures.DDColor import DDColorArch

    return DDColorArch()


def _what_it_is(state_dict: Mapping[str, torch.Tensor]) -> str:
    """Name the architecture spandrel recognises, or say which DDColor keys are missing."""
    from spandrel import MAIN_REGISTRY
    from spandrel_extra_arches import EXTRA_REGISTRY

    for registry in (MAIN_REGISTRY, EXTRA_REGISTRY):
        for support in registry.architectures("detection"):
            if support.architecture.id != "DDColor" and support.detect(state_dict):
                return f"it is a {support.architecture.name} model"
    if any(k.startswith(("encoder.arch.", "decoder.", "refine_net.")) for k in state_dict):
        expected = ("mean", "std", "refine_net.0.0.weight_orig", "encoder.arch.stages.3.0.gamma",
                    "encoder.arch.norm.weight")
        missing = [k for k in expected if k not in state_dict]
        return f"it has DDColor keys but is incomplete (missing {', '.join(missing) or 'encoder stages'})"
    sample = ", ".join(sorted(state_dict)[:3])
    return f"no known architecture matches its {len(state_dict)} tensors (e.g. {sample})"


def _load_problems(message: str) -> str:
    """A short summary of torch's load_state_dict error: counts and a few names of each kind."""
    parts = []
    for label, pattern in (("missing", r'Missing key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n|$)'),
                           ("unexpected", r'Unexpected key\(s\) in state_dict: (.*?)(?:\.\s*$|\.\s*\n|$)')):
        found = re.search(pattern, message, flags=re.MULTILINE)
        if found:
            keys = re.findall(r'"([^"]+)"', found.group(1))
            parts.append(f"{len(keys)} {label} keys, e.g. {', '.join(keys[:3])}")
    mismatches = re.findall(r"size mismatch for ([^:]+): (.*)", message)
    if mismatches:
        name, detail = mismatches[0]
        parts.append(f"{len(mismatches)} size mismatch(es), e.g. {name}: {detail.strip()[:160]}")
    return "; ".join(parts) or _first_lines(message)


def _official_hint(path: Path) -> str:
    official = OFFICIAL_CHECKPOINTS.get(path.name)
    if official is None:
        return ""
    expected = f"{official.size:,} bytes" if official.size else f"at least {official.min_size:,} bytes"
    return f". The official {path.name} has {expected}: delete this file and it will be downloaded again"


def _first_lines(text: str, lines: int = 3) -> str:
    return " ".join(text.strip().splitlines()[:lines])[:400]
