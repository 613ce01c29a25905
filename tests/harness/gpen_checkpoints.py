"""Random-weight GPEN generators with the released key layout, and fabricated detector/parser weights.

The layout table here is written from the published description of the released files (key names,
shapes, persistent blur kernels), independently of ``restoration/gpen``, so loading these files is a
real check of the architecture code. Random values are chosen so every path matters: the feature
"noise" weights are U(0.1, 1) (0 would switch the encoder skips off) and biases are non-zero.

The fabricated RetinaFace detector fires on exactly one kind of thing: a bright patch on a dark
background, at the stride-32 cell whose sample point the patch covers, and reports a face-shaped set
of landmarks around that cell's centre. The fabricated ParseNet labels every pixel "skin".
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

SIZES = (256, 512, 1024, 2048)
STYLE_DIM = 512
N_MLP = 8
# Documented totals of the released generators (tensors in the state dict, learnable parameters).
TENSOR_COUNTS = {256: 144, 512: 163, 1024: 182, 2048: 201}
PARAM_COUNTS = {256: 18_879_010, 512: 71_005_223, 1024: 71_210_540, 2048: 71_294_769}
CONSTRUCTOR = {256: (1, 0.5), 512: (2, 1.0), 1024: (2, 1.0), 2048: (2, 1.0)}  # channel_multiplier, narrow


def channels(size: int, channel_multiplier: int | None = None, narrow: float | None = None) -> dict[int, int]:
    cm, n = CONSTRUCTOR[size]
    cm = cm if channel_multiplier is None else channel_multiplier
    n = n if narrow is None else narrow
    return {4: int(512 * n), 8: int(512 * n), 16: int(512 * n), 32: int(512 * n), 64: int(256 * cm * n),
            128: int(128 * cm * n), 256: int(64 * cm * n), 512: int(32 * cm * n), 1024: int(16 * cm * n),
            2048: int(8 * cm * n)}


def expected_layout(size: int, channel_multiplier: int | None = None,
                    narrow: float | None = None) -> dict[str, tuple[int, ...]]:
    """Every tensor of a released GPEN-BFR-<size> state dict and its shape, in file order."""
    ch = channels(size, channel_multiplier, narrow)
    layout: dict[str, tuple[int, ...]] = {
        "ecd0.0.0.weight": (ch[size], 3, 1, 1),
        "ecd0.0.1.bias": (ch[size],),
    }
    res = size
    for i in range(1, int(math.log2(size)) - 1):
        layout[f"ecd{i}.0.0.kernel"] = (4, 4)
        layout[f"ecd{i}.0.1.weight"] = (ch[res // 2], ch[res], 3, 3)
        layout[f"ecd{i}.0.2.bias"] = (ch[res // 2],)
        res //= 2
    layout["final_linear.0.weight"] = (STYLE_DIM, ch[4] * 16)
    layout["final_linear.0.bias"] = (STYLE_DIM,)
    for i in range(1, N_MLP + 1):
        layout[f"generator.style.{i}.weight"] = (STYLE_DIM, STYLE_DIM)
        layout[f"generator.style.{i}.bias"] = (STYLE_DIM,)
    layout["generator.input.input"] = (1, ch[4], 4, 4)

    def styled(prefix: str, c_in: int, c_out: int, upsample: bool) -> None:
        layout[f"{prefix}.conv.weight"] = (1, c_out, c_in, 3, 3)
        layout[f"{prefix}.conv.modulation.weight"] = (c_in, STYLE_DIM)
        layout[f"{prefix}.conv.modulation.bias"] = (c_in,)
        if upsample:
            layout[f"{prefix}.conv.blur.kernel"] = (4, 4)
        layout[f"{prefix}.noise.weight"] = (1,)
        layout[f"{prefix}.activate.bias"] = (2 * c_out,)

    def to_rgb(prefix: str, c_in: int, upsample: bool) -> None:
        layout[f"{prefix}.bias"] = (1, 3, 1, 1)
        if upsample:
            layout[f"{prefix}.upsample.kernel"] = (4, 4)
        layout[f"{prefix}.conv.weight"] = (1, 3, c_in, 1, 1)
        layout[f"{prefix}.conv.modulation.weight"] = (c_in, STYLE_DIM)
        layout[f"{prefix}.conv.modulation.bias"] = (c_in,)

    styled("generator.conv1", ch[4], ch[4], False)
    to_rgb("generator.to_rgb1", 2 * ch[4], False)
    c_in = ch[4]
    for k, i in enumerate(range(3, int(math.log2(size)) + 1)):
        c_out = ch[2**i]
        styled(f"generator.convs.{2 * k}", 2 * c_in, c_out, True)
        styled(f"generator.convs.{2 * k + 1}", 2 * c_out, c_out, False)
        to_rgb(f"generator.to_rgbs.{k}", 2 * c_out, True)
        c_in = c_out
    return layout


def fir_kernel(upsampling: bool) -> torch.Tensor:
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    k = taps[None, :] * taps[:, None]
    return k / k.sum() * (4.0 if upsampling else 1.0)


def random_state_dict(size: int, seed: int = 0, channel_multiplier: int | None = None,
                      narrow: float | None = None) -> dict[str, torch.Tensor]:
    """A plain state dict like the releases, with random values that exercise every path."""
    g = torch.Generator().manual_seed(seed)

    def uniform(shape: tuple[int, ...], lo: float, hi: float) -> torch.Tensor:
        return torch.rand(shape, generator=g) * (hi - lo) + lo

    sd: dict[str, torch.Tensor] = {}
    for key, shape in expected_layout(size, channel_multiplier, narrow).items():
        if key.endswith(".kernel"):
            value = fir_kernel(upsampling=key.startswith("generator."))
        elif key.endswith("noise.weight"):
            value = uniform(shape, 0.1, 1.0)
        elif key.startswith("generator.style.") and key.endswith(".weight"):
            value = torch.randn(shape, generator=g) / 0.01  # equalised lr: stored weight is w / lr_mul
        elif key.endswith("modulation.bias"):
            value = uniform(shape, 0.8, 1.2)
        elif key.endswith(".bias"):
            value = uniform(shape, -0.2, 0.2)
        else:
            value = torch.randn(shape, generator=g)
        sd[key] = value.float()
    return sd


def write_checkpoint(path: Path, size: int, seed: int = 0, **config) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(random_state_dict(size, seed, **config), path)
    return path


# ---------------------------------------------------------------------------------------------------
# Fabricated helper networks (facexlib layouts; loaded by the real networks)

FACE_CELL_STRIDE = 32  # the detector fires on stride-32 cells
FAKE_FACE_BOX = 96.0  # px, side of the reported face box
FAKE_EYE_DISTANCE = 40.0  # px, roughly, between the reported eye landmarks


def _zeroed(template: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    sd = {}
    for k, v in template.items():
        if k.endswith("running_var") or (k.endswith(".weight") and v.ndim == 1):  # BatchNorm: identity
            sd[k] = torch.ones(v.shape, dtype=v.dtype)
        else:
            sd[k] = torch.zeros(v.shape, dtype=v.dtype)
    return sd


def _meta_state_dict(build) -> dict[str, torch.Tensor]:
    """A network's state-dict layout without running its (slow) random initialisation."""
    import warnings

    with warnings.catch_warnings(), torch.device("meta"):
        warnings.simplefilter("ignore", UserWarning)  # torchvision's "pretrained is deprecated"
        return build().state_dict()


def fake_landmark_offsets() -> torch.Tensor:
    """Face-shaped landmark offsets (5×2, px) from the box centre."""
    eyes_nose_mouth = torch.tensor([[-20.0, -14.0], [20.0, -14.0], [0.0, 8.0], [-16.0, 30.0], [16.0, 30.0]])
    return eyes_nose_mouth * (FAKE_EYE_DISTANCE / 40.0)


def detector_state_dict() -> dict[str, torch.Tensor]:
    """RetinaFace-R50 weights that pass pixel brightness to the stride-32 head and fire on bright cells."""
    from facexlib.detection.retinaface import RetinaFace

    sd = _zeroed(_meta_state_dict(lambda: RetinaFace(network_name="resnet50", half=False, phase="test",
                                                     device=torch.device("meta"))))
    sd["body.conv1.weight"][0, :, 3, 3] = 1.0 / 3.0  # channel 0 = mean of (BGR·255 − mean)
    for layer in range(1, 5):
        sd[f"body.layer{layer}.0.downsample.0.weight"][0, 0, 0, 0] = 1.0  # shortcut carries channel 0 on
    sd["fpn.output3.0.weight"][0, 0, 0, 0] = 1.0
    sd["ssh3.conv3X3.0.weight"][0, 0, 1, 1] = 1.0
    # ClassHead[2], anchor 0 (256 px prior): face logit = 0.1·brightness − 5; everything else background.
    for level in range(3):
        sd[f"ClassHead.{level}.conv1x1.bias"][:] = torch.tensor([10.0, -10.0, 10.0, -10.0])
    sd["ClassHead.2.conv1x1.bias"][0:2] = torch.tensor([0.0, -5.0])
    sd["ClassHead.2.conv1x1.weight"][1, 0, 0, 0] = 0.1
    prior = 256.0
    size_code = math.log(FAKE_FACE_BOX / prior) / 0.2
    sd["BboxHead.2.conv1x1.bias"][0:4] = torch.tensor([0.0, 0.0, size_code, size_code])
    sd["LandmarkHead.2.conv1x1.bias"][0:10] = (fake_landmark_offsets() / (0.1 * prior)).flatten()
    return sd


def parser_state_dict() -> dict[str, torch.Tensor]:
    """ParseNet(512, 512, 19) weights that label every pixel as skin (class 1)."""
    from facexlib.parsing.parsenet import ParseNet

    sd = _zeroed(_meta_state_dict(lambda: ParseNet(in_size=512, out_size=512, parsing_ch=19)))
    sd["out_mask_conv.conv2d.bias"][1] = 5.0
    return sd


def write_face_helpers(folder: Path, detector_name: str = "detection_Resnet50_Final.pth",
                       parser_name: str = "parsing_parsenet.pth") -> tuple[Path, Path]:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    det, par = folder / detector_name, folder / parser_name
    torch.save(detector_state_dict(), det)
    torch.save(parser_state_dict(), par)
    return det, par


def bright_patch_image(height: int, width: int, cell: tuple[int, int], patch: int = 12) -> torch.Tensor:
    """IMAGE (1,H,W,3): dark, smooth background with a bright patch over the sample point of ``cell`` (row, col).

    The fabricated detector then reports one face centred at that cell's centre.
    """
    ys = torch.linspace(0, 1, height)[:, None]
    xs = torch.linspace(0, 1, width)[None, :]
    base = 0.08 + 0.06 * torch.sin(6.0 * xs) * torch.cos(4.0 * ys)
    img = torch.stack([base, base * 0.9 + 0.02, base * 0.8 + 0.04], dim=-1)
    cy, cx = cell[0] * FACE_CELL_STRIDE, cell[1] * FACE_CELL_STRIDE
    img[max(cy - patch // 2, 0):cy + patch // 2, max(cx - patch // 2, 0):cx + patch // 2] = 0.95
    return img[None].clamp(0, 1)


# ---------------------------------------------------------------------------------------------------
# Helpers for the GPEN tests that run on a real ComfyUI server

GPEN_TEST_FILE = "GPEN-BFR-256.pth"  # an official name: present on disk, so never downloaded


def install_server_models(models_dir: Path) -> None:
    """GPEN-256 (random weights) in models/gpen, fabricated detector/parser in models/facedetection."""
    gpen = Path(models_dir) / "gpen" / GPEN_TEST_FILE
    if not gpen.exists():
        write_checkpoint(gpen, 256, seed=11)
    helpers = Path(models_dir) / "facedetection"
    if not (helpers / "parsing_parsenet.pth").exists():
        write_face_helpers(helpers)


def save_png(image: torch.Tensor, path: Path) -> None:
    """IMAGE (1,H,W,3) → 8-bit PNG, quantised the way ComfyUI's SaveImage does."""
    import numpy as np
    from PIL import Image

    Image.fromarray(np.clip(255.0 * image[0].numpy(), 0, 255).astype(np.uint8)).save(path)


def load_png(path: Path):
    """RGB int16 array (so differences do not wrap)."""
    import numpy as np
    from PIL import Image

    with Image.open(path) as img:
        return np.asarray(img.convert("RGB")).astype(np.int16)


def output_files(server, entry: dict, node_id: str) -> list[Path]:
    """Files a SaveImage / PreviewImage node wrote, from its history entry."""
    base = {"output": server.output_dir, "temp": server.base_dir / "temp"}
    return [base[i["type"]] / i["subfolder"] / i["filename"] for i in entry["outputs"][node_id]["images"]]


def error_message(entry: dict) -> str:
    """The exception message of a failed prompt's history entry ('' if none)."""
    for name, data in entry["status"]["messages"]:
        if name == "execution_error":
            return data["exception_message"]
    return ""
