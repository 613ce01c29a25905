"""Random-weight DDColor checkpoints with the exact key layout of the official releases.

Real weights cannot be downloaded in tests, and default random weights are degenerate (fresh
spectral-norm vectors make the output explode to ~1e13, layer-scale gammas of 1e-6 turn every
ConvNeXt block into an identity, BatchNorm stats of 0/1 hide a whole class of bugs). So the
builder makes every path matter, as the released models do:

* spectral-norm ``weight_u`` / ``weight_v`` = the top singular vectors of ``weight_orig``;
* ConvNeXt layer-scale ``gamma`` ~ U(0.05, 0.25);
* BatchNorm running stats and affine parameters randomised;
* the last ``color_embed`` layer scaled so predicted ab spans roughly +-60..100 (scaling a
  spectral-norm ``weight_orig`` would do nothing).

Files are saved like the releases (``torch.save({'params': state_dict})``), optionally with the
two dummy ``encoder.arch.head_cls`` keys some releases carry. Built files are cached for the
test session (per process): the 912 MB large one is written at most once, and only when a test
asks for it.
"""

from __future__ import annotations

import atexit
import functools
import shutil
import tempfile
import threading
from pathlib import Path

import torch

# The official constructor arguments of every released checkpoint (models.md 1.2 / 4).
OFFICIAL_CTOR = {
    "decoder_name": "MultiScaleColorDecoder",
    "num_output_channels": 2,
    "last_norm": "Spectral",
    "do_normalize": False,
    "num_queries": 100,
    "num_scales": 3,
    "dec_layers": 9,
}
ENCODER_DIMS = {"convnext-t": [96, 192, 384, 768], "convnext-l": [192, 384, 768, 1536]}
ENCODER_DEPTHS = {"convnext-t": [3, 3, 9, 3], "convnext-l": [3, 3, 27, 3]}
TENSOR_COUNT = {"convnext-t": 440, "convnext-l": 602}  # state-dict entries incl. buffers (models.md 1.1)
AB_TARGET = 80.0  # the 99th percentile of |ab| the calibration aims for

_cache_lock = threading.Lock()
_cache_dir: Path | None = None
_built: dict[tuple, Path] = {}


def build_module(encoder: str, seed: int = 0) -> torch.nn.Module:
    """A DDColor module with the released configuration and weights that exercise every path."""
    from spandrel_extra_arches.architectures.DDColor import DDColor

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = DDColor(encoder_name=encoder, input_size=(64, 64), **OFFICIAL_CTOR).eval()
        with torch.no_grad():
            _randomise(model)
            _calibrate_ab_range(model)
    return model


@functools.cache
def shared_module(encoder: str = "convnext-t", seed: int = 0) -> torch.nn.Module:
    """One in-memory model per (encoder, seed) for the whole session; callers must not change it."""
    return build_module(encoder, seed).requires_grad_(False)


def build_state_dict(encoder: str, seed: int = 0, *, head_cls: bool = False) -> dict[str, torch.Tensor]:
    # the tiny model is shared with in-memory tests; the 912 MB large one is not kept around
    module = shared_module(encoder, seed) if encoder == "convnext-t" else build_module(encoder, seed)
    sd = {k: v.detach().clone() for k, v in module.state_dict().items()}
    if head_cls:
        g = torch.Generator().manual_seed(seed + 1)
        sd["encoder.arch.head_cls.weight"] = torch.randn(4, ENCODER_DIMS[encoder][-1], generator=g)
        sd["encoder.arch.head_cls.bias"] = torch.randn(4, generator=g)
    return sd


def save_release_format(state_dict: dict[str, torch.Tensor], path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"params": state_dict}, path)
    return path


def checkpoint_file(encoder: str = "convnext-t", seed: int = 0, *, head_cls: bool = True) -> Path:
    """A cached ``{'params': sd}`` file for this session (read-only: copy it before changing it)."""
    key = (encoder, seed, head_cls)
    with _cache_lock:
        if key not in _built:
            name = f"ddcolor-{encoder}-seed{seed}{'-headcls' if head_cls else ''}.pth"
            _built[key] = save_release_format(build_state_dict(encoder, seed, head_cls=head_cls), _session_dir() / name)
        return _built[key]


def install_checkpoint(dest: Path, encoder: str = "convnext-t", seed: int = 0) -> Path:
    """Put a cached checkpoint at ``dest`` (hard link when possible: no 220 MB copy)."""
    source = checkpoint_file(encoder, seed)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.exists():
        dest.unlink()
    try:
        dest.hardlink_to(source)
    except OSError:
        shutil.copyfile(source, dest)
    return dest


def _session_dir() -> Path:
    global _cache_dir
    if _cache_dir is None:
        _cache_dir = Path(tempfile.mkdtemp(prefix="rg-ddcolor-ckpt-"))
        atexit.register(shutil.rmtree, _cache_dir, True)
    return _cache_dir


def _randomise(model: torch.nn.Module) -> None:
    for name, module in model.named_modules():
        if hasattr(module, "weight_orig") and hasattr(module, "weight_u"):
            u, v = top_singular_vectors(module.weight_orig.reshape(module.weight_orig.shape[0], -1))
            module.weight_u.copy_(u)
            module.weight_v.copy_(v)
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0.0, 0.2)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.uniform_(0.5, 1.5)
            module.bias.normal_(0.0, 0.1)
            module.num_batches_tracked.fill_(1000)
        if name.startswith("encoder.arch.stages.") and getattr(module, "gamma", None) is not None:
            module.gamma.uniform_(0.05, 0.25)
    for name, param in model.named_parameters():
        if name.startswith("encoder.arch.norm") and name.endswith(".weight"):
            param.uniform_(0.5, 1.5)  # the hooked LayerNorms feed the decoder: make their affine matter
        elif name.startswith("encoder.arch.norm") and name.endswith(".bias"):
            param.normal_(0.0, 0.1)


def top_singular_vectors(w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(u, v) for the largest singular value, from the eigenvectors of the smaller Gram matrix (fast)."""
    if w.shape[0] <= w.shape[1]:
        u = torch.linalg.eigh(w @ w.T).eigenvectors[:, -1]
        v = w.T @ u
        return u, v / v.norm()
    v = torch.linalg.eigh(w.T @ w).eigenvectors[:, -1]
    u = w @ v
    return u / u.norm(), v


def _calibrate_ab_range(model: torch.nn.Module) -> None:
    """Scale the last colour-embedding layer so ab of a test image spans about +-AB_TARGET."""
    g = torch.Generator().manual_seed(1234)
    gray = torch.rand(1, 1, 64, 64, generator=g).expand(1, 3, 64, 64)
    last = model.decoder.color_decoder.color_embed.layers[-1]
    for _ in range(3):  # the refine conv adds an input term, so converge in a few steps
        ab = model(gray)
        spread = torch.quantile(ab.abs().flatten(), 0.99).item()
        factor = AB_TARGET / max(spread, 1e-6)
        last.weight.mul_(factor)
        last.bias.mul_(factor)
    _clear_hooks(model)


def _clear_hooks(model: torch.nn.Module) -> None:
    for hook in getattr(model.encoder, "hooks", []):
        hook.feature = None
