"""GPEN throughput: faces per second through the generator, one by one vs batched, in one run.

Prints one JSON object. CPU figures always; CUDA figures (and peak memory) when a GPU is present.
Random weights (the speed does not depend on them); the "noise" feature weights are made non-zero
so the run takes the same paths as a released file. Usage::

    .venv/bin/python bench/gpen.py                  # 512 px, 4 faces, batches of 4, 2 CPU threads
    .venv/bin/python bench/gpen.py --size 256 --faces 8 --batch 8 --parser
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from _common import emit, use_repo_packages

use_repo_packages()


def build_generator(size: int) -> torch.nn.Module:
    from restoration_governor.restoration.gpen import network

    model = network.GPEN(network.RELEASED_CONFIGS[size]).eval().requires_grad_(False)
    for name, param in model.named_parameters():
        if name.endswith("noise.weight"):
            param.data.uniform_(0.1, 1.0)
    return model


def build_parser() -> torch.nn.Module:
    from facexlib.parsing.parsenet import ParseNet

    return ParseNet(in_size=512, out_size=512, parsing_ch=19).eval().requires_grad_(False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def timed_pass(model: torch.nn.Module, faces: torch.Tensor, batch: int, device: torch.device,
               repeats: int) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of the best of ``repeats`` passes over ``faces`` in chunks of ``batch``.

    CPU seconds are reported too because on a shared machine wall time mostly measures the neighbours.
    """
    best = (float("inf"), float("inf"))
    for _ in range(repeats):
        _sync(device)
        wall, cpu = time.perf_counter(), time.process_time()
        for i in range(0, faces.shape[0], batch):
            model(faces[i:i + batch].to(device))
        _sync(device)
        best = min(best, (time.perf_counter() - wall, time.process_time() - cpu))
    return best


def measure(model: torch.nn.Module, size: int, n_faces: int, batch: int, device: torch.device,
            repeats: int) -> dict:
    model = model.to(device)
    faces = torch.rand(n_faces, 3, size, size, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():  # warm-up: allocator, cuDNN/oneDNN algorithm choice, lazy inits
        model(faces[:1].to(device))
        model(faces[:batch].to(device))
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    one_wall, one_cpu = timed_pass(model, faces, 1, device, repeats)
    batched_wall, batched_cpu = timed_pass(model, faces, batch, device, repeats)
    result = {
        "one_by_one_faces_per_s": round(n_faces / one_wall, 4),
        "batched_faces_per_s": round(n_faces / batched_wall, 4),
        "batched_over_one_by_one": round(one_wall / batched_wall, 3),
    }
    if device.type == "cpu":
        result.update({
            "one_by_one_cpu_s_per_face": round(one_cpu / n_faces, 3),
            "batched_cpu_s_per_face": round(batched_cpu / n_faces, 3),
            "batched_over_one_by_one_by_cpu_time": round(one_cpu / batched_cpu, 3),
            "load_average_1min": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        })
    if device.type == "cuda":
        result["peak_working_memory_mib"] = round((torch.cuda.max_memory_allocated(device) - base) / 2**20, 1)
    model.to("cpu")
    return result


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=512, choices=(256, 512, 1024, 2048))
    ap.add_argument("--faces", type=int, default=4, help="faces per pass")
    ap.add_argument("--batch", type=int, default=4, help="faces per batch in the batched pass")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (the shared dev box has 2 cores)")
    ap.add_argument("--repeats", type=int, default=1, help="passes per setting; the best is reported")
    ap.add_argument("--gpu-faces", type=int, default=16, help="faces per pass on the GPU")
    ap.add_argument("--gpu-batch", type=int, default=8, help="faces per batch on the GPU")
    ap.add_argument("--parser", action="store_true", help="also time ParseNet (the blend mask, 512 px per face)")
    ap.add_argument("--no-cpu", action="store_true", help="GPU figures only")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)

    report: dict = {
        "benchmark": "gpen_generator_throughput",
        "size": args.size,
        "torch": torch.__version__,
        "machine": platform.machine(),
        "cpu": None,
        "cuda": None,
    }
    generator = build_generator(args.size)
    parser = build_parser() if args.parser else None
    if not args.no_cpu:
        cpu = torch.device("cpu")
        report["cpu"] = {"threads": args.threads, "faces": args.faces, "batch": args.batch,
                         "generator": measure(generator, args.size, args.faces, args.batch, cpu, args.repeats)}
        if parser is not None:
            report["cpu"]["parser"] = measure(parser, 512, args.faces, args.batch, cpu, args.repeats)
    if torch.cuda.is_available():
        gpu = torch.device("cuda")
        report["cuda"] = {"device": torch.cuda.get_device_name(gpu), "faces": args.gpu_faces,
                          "batch": args.gpu_batch,
                          "generator": measure(generator, args.size, args.gpu_faces, args.gpu_batch, gpu,
                                               max(args.repeats, 3))}
        if parser is not None:
            report["cuda"]["parser"] = measure(parser, 512, args.gpu_faces, args.gpu_batch, gpu, max(args.repeats, 3))
    emit(report)
    return report


if __name__ == "__main__":
    main()
