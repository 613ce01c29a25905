"""DDColor throughput, memory and colour bleeding; prints one JSON object.

* ``cpu``: images/s at ``--size`` (512) for the node's batched path (``pipeline.colorize``, one
  chunk of ``--batch`` photos, the node's default options) against a one-image-at-a-time loop of
  the same model (the way existing DDColor nodes run: per photo, OpenCV Lab math, resize, a
  batch-1 forward, nearest upsampling), in the same run; plus the node's own pipeline with chunks
  of 1, which is what the node runs on a CPU (batching does not pay off there). Peak RSS growth
  per pass is sampled every 10 ms; each figure is the best of ``--repeats`` passes.
* ``cuda`` (only where a GPU is present): fp32 against bf16, batch 1 against batch 8, peak VRAM,
  and how far bf16 output is from fp32 in 8-bit levels.
* ``precision_cpu``: the same bf16-vs-fp32 difference on the CPU at a small size (CPU bf16 is
  slow, so only to document the colour difference).
* ``edge_bleed``: the synthetic facade of ``restoration/ddcolor/edge_chart.py``: mean ab error
  near edges and in flat areas for nearest / bilinear / guided upsampling.

Weights are random with the real layout (speed does not depend on their values).
Usage: ``.venv/bin/python bench/ddcolor.py [--encoder convnext-l] [--size 512] [--batch 4] [--quick]``
"""

from __future__ import annotations

import argparse
import platform
import threading
import time

import cv2
import numpy as np
import psutil
import torch
import torch.nn.functional as F  # noqa: N812
from _common import emit, use_repo_packages

use_repo_packages()

from harness.ddcolor_checkpoints import build_module  # noqa: E402
from restoration_governor.restoration.ddcolor.edge_chart import bleed_report, edge_chart  # noqa: E402
from restoration_governor.restoration.ddcolor.options import ColorizeOptions  # noqa: E402
from restoration_governor.restoration.ddcolor.pipeline import colorize  # noqa: E402

NODE_DEFAULTS = {"ab_upsample": "guided", "clamp_ab": True, "keep_aspect": False}


class PeakRss:
    """Peak resident-set growth of this process while the block runs."""

    def __init__(self) -> None:
        self.process = psutil.Process()
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakRss:
        self.base = self.process.memory_info().rss
        self.peak = self.base
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.process.memory_info().rss)
            time.sleep(0.01)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.process.memory_info().rss)

    @property
    def growth_mib(self) -> float:
        return round((self.peak - self.base) / 2**20, 1)


def photos(count: int, height: int, width: int) -> torch.Tensor:
    """ComfyUI IMAGE batch of gray photo-like images (smooth shapes, edges, grain)."""
    y, x = np.mgrid[0:1:complex(height), 0:1:complex(width)]
    rng = np.random.default_rng(0)
    out = []
    for i in range(count):
        base = 0.5 + 0.3 * np.sin((7 + i) * x + 3 * y) * np.cos(5 * y) + 0.2 * ((x * (4 + i)).astype(int) % 2 - 0.5)
        base = np.clip(base + 0.03 * rng.standard_normal((height, width)), 0, 1)
        out.append(np.repeat(np.round(base * 255)[..., None] / 255, 3, axis=-1))
    return torch.from_numpy(np.stack(out)).float()


def existing_node_loop(model: torch.nn.Module, images: torch.Tensor, size: int, device: torch.device) -> torch.Tensor:
    """One photo at a time, as kijai/ComfyUI-DDColor does (OpenCV Lab, batch-1 forward, nearest ab)."""
    results = []
    for image in images:
        rgb = image.numpy().astype(np.float32)
        orig_l = cv2.cvtColor(rgb, cv2.COLOR_RGB2Lab)[:, :, :1]
        small_l = cv2.cvtColor(cv2.resize(rgb, (size, size)), cv2.COLOR_RGB2Lab)[:, :, :1]
        gray = cv2.cvtColor(np.concatenate([small_l, 0 * small_l, 0 * small_l], -1), cv2.COLOR_LAB2RGB)
        with torch.inference_mode():
            ab = model(torch.from_numpy(gray.transpose(2, 0, 1)).unsqueeze(0).to(device)).float()
            ab = F.interpolate(ab, size=rgb.shape[:2]).cpu()[0].numpy().transpose(1, 2, 0)
        results.append(torch.from_numpy(cv2.cvtColor(np.concatenate([orig_l, ab], -1), cv2.COLOR_LAB2RGB)))
    return torch.stack(results)


def timed(fn, device: torch.device) -> tuple[float, object]:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    out = fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start, out


def cpu_section(model, images, size: int, batch: int, repeats: int) -> dict:
    cpu = torch.device("cpu")
    options = ColorizeOptions(input_size=size, precision="fp32", **NODE_DEFAULTS)
    passes = {
        "node_batched": lambda: colorize(images, model, options, device=cpu, chunk_size=batch),
        "node_one_at_a_time": lambda: colorize(images, model, options, device=cpu, chunk_size=1),
        "existing_node_loop": lambda: existing_node_loop(model, images, size, cpu),
    }
    # warm-up with both batch shapes: oneDNN builds its primitives per shape on first use
    colorize(images[:1], model, options, device=cpu)
    colorize(images[:batch], model, options, device=cpu, chunk_size=batch)
    result: dict = {}
    for name, run in passes.items():
        best, peak = float("inf"), 0.0
        for _ in range(repeats):
            with PeakRss() as rss:
                seconds, _ = timed(run, cpu)
            best, peak = min(best, seconds), max(peak, rss.growth_mib)
        result[name] = {"images_per_s": round(len(images) / best, 4), "seconds": round(best, 2),
                        "peak_rss_growth_mib": peak}
    result["batched_over_existing_loop"] = round(result["node_batched"]["images_per_s"]
                                                 / result["existing_node_loop"]["images_per_s"], 3)
    result["batched_over_one_at_a_time"] = round(result["node_batched"]["images_per_s"]
                                                 / result["node_one_at_a_time"]["images_per_s"], 3)
    # what the node does on a CPU (nodes/ddcolor.py MAX_CHUNK_CPU = 1) against the existing nodes' loop
    result["node_on_cpu"] = "node_one_at_a_time"
    result["node_on_cpu_over_existing_loop"] = round(result["node_one_at_a_time"]["images_per_s"]
                                                     / result["existing_node_loop"]["images_per_s"], 3)
    return result


def levels_apart(a: torch.Tensor, b: torch.Tensor) -> dict:
    diff = (a - b).abs() * 255
    p99 = torch.quantile(diff.flatten()[::7], 0.99).item()  # quantile() has an input size limit: subsample
    return {"mean_levels": round(diff.mean().item(), 3), "p99_levels": round(p99, 2),
            "max_levels": round(diff.max().item(), 1)}


def cuda_section(model, images, size: int) -> dict:
    gpu = torch.device("cuda")
    model = model.to(gpu)
    result: dict = {"device": torch.cuda.get_device_name(gpu), "images": len(images)}
    outputs = {}

    def one_pass(options: ColorizeOptions, chunk: int) -> torch.Tensor:
        return colorize(images, model, options, device=gpu, chunk_size=chunk)

    for precision in ("fp32", "bf16"):
        options = ColorizeOptions(input_size=size, precision=precision, **NODE_DEFAULTS)
        for chunk in (1, 8):
            colorize(images[:chunk], model, options, device=gpu, chunk_size=chunk)  # warm-up
            torch.cuda.reset_peak_memory_stats(gpu)
            base = torch.cuda.memory_allocated(gpu)
            runs = [timed(lambda o=options, c=chunk: one_pass(o, c), gpu) for _ in range(3)]
            best = min(seconds for seconds, _ in runs)
            outputs[precision] = runs[-1][1]
            result[f"{precision}_batch{chunk}"] = {
                "images_per_s": round(len(images) / best, 3),
                "peak_vram_working_mib": round((torch.cuda.max_memory_allocated(gpu) - base) / 2**20, 1),
            }
    speed = {key: value["images_per_s"] for key, value in result.items() if isinstance(value, dict)}
    result["bf16_over_fp32_batch8"] = round(speed["bf16_batch8"] / speed["fp32_batch8"], 3)
    result["batch8_over_batch1_fp32"] = round(speed["fp32_batch8"] / speed["fp32_batch1"], 3)
    result["bf16_vs_fp32_output"] = levels_apart(outputs["bf16"], outputs["fp32"])
    result["model_vram_mib"] = round(sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20, 1)
    model.to("cpu")
    return result


def precision_cpu_section(model, size: int = 128) -> dict:
    images = photos(2, size, size)
    cpu = torch.device("cpu")
    out = {}
    for precision in ("fp32", "bf16"):
        options = ColorizeOptions(input_size=size, precision=precision, **NODE_DEFAULTS)
        out[precision] = colorize(images, model, options, device=cpu, chunk_size=2)
    return {"size": size, **levels_apart(out["bf16"], out["fp32"])}


def edge_section() -> dict:
    report = {}
    for model_size in (512, 1024):
        for grain in (0.0, 3.0):
            key = f"chart1440x960_model{model_size}_grain{grain:g}"
            report[key] = bleed_report(edge_chart(960, 1440, grain=grain), (model_size, model_size))
    return report


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--encoder", default="convnext-l", choices=("convnext-l", "convnext-t"),
                    help="convnext-l = the three large official checkpoints, convnext-t = paper_tiny")
    ap.add_argument("--size", type=int, default=512, help="model resolution (the person preset's 512)")
    ap.add_argument("--batch", type=int, default=4, help="photos per pass on the CPU (one chunk)")
    ap.add_argument("--photo", default="768x512", help="photo size WxH")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the shared dev box has 2 cores)")
    ap.add_argument("--repeats", type=int, default=1, help="passes per setting on the CPU; the best is reported")
    ap.add_argument("--gpu-images", type=int, default=16, help="photos per pass on the GPU")
    ap.add_argument("--quick", action="store_true", help="tiny encoder, size 256, batch 2 (a smoke run)")
    ap.add_argument("--no-cpu", action="store_true", help="GPU and edge figures only")
    args = ap.parse_args(argv)
    if args.quick:
        args.encoder, args.size, args.batch = "convnext-t", 256, 2
    torch.set_num_threads(args.threads)
    width, height = (int(v) for v in args.photo.split("x"))

    model = build_module(args.encoder).requires_grad_(False)
    report: dict = {
        "benchmark": "ddcolor_colorize",
        "encoder": args.encoder,
        "model_size": args.size,
        "photo": f"{width}x{height}",
        "node_options": NODE_DEFAULTS,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": None,
        "cuda": None,
    }
    if not args.no_cpu:
        report["cpu"] = {"threads": args.threads, "photos": args.batch,
                         **cpu_section(model, photos(args.batch, height, width), args.size, args.batch, args.repeats)}
        report["precision_cpu"] = precision_cpu_section(model)
    if torch.cuda.is_available():
        report["cuda"] = cuda_section(model, photos(args.gpu_images, height, width), args.size)
    report["edge_bleed"] = edge_section()
    emit(report)
    return report


if __name__ == "__main__":
    main()
