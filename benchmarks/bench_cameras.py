"""Benchmark: CAMERAS (``cameras.Cameras``) against its floor and the straightforward loop.

Three variants run in the same process on the same images and model:

* ``forwards``  — the floor: bare forward passes (no_grad) at every size, nothing else;
* ``cameras``   — :class:`cameras.Cameras` (batched over sizes' images, no graph below the
  layer, exact fusion without K x H x W tensors);
* ``loop``      — :func:`cameras.reference.cameras_reference`: per image, per size, full
  forward + backward (parameter gradients included), upsampled copies stored per size,
  like the authors' code.

Reported per variant: seconds per image (median over images after a warm-up), peak memory
above the starting point (CUDA: ``max_memory_allocated``; CPU: resident set size sampled every
millisecond in a background thread, after ``malloc_trim``), and the ratios
``cameras / forwards``, ``loop / cameras`` (speed-up) and ``cameras / loop`` (memory).
Rows are appended to a CSV (default ``benchmarks/results/bench_cameras.csv``).

Usage::

    python benchmarks/bench_cameras.py                       # ResNet-50, 8 sizes, CPU
    python benchmarks/bench_cameras.py --device cuda --images 8
    python benchmarks/bench_cameras.py --sizes 224 324 424 524 --threads 2

Random weights are used for timing (the cost does not depend on the weights); the top-1
rule is disabled by passing explicit targets so that every variant does the same work.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import gc
import os
import platform
import statistics
import sys
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cameras import DEFAULT_SIZES, Cameras, __version__  # noqa: E402
from cameras.core import resize_to  # noqa: E402
from cameras.reference import cameras_reference  # noqa: E402

LAYERS = {"resnet50": "layer4", "resnet18": "layer4", "densenet121": "features", "vgg16": "features.29"}


class PeakMemory:
    """Peak memory (bytes) above the level at entry, on CUDA or via sampled RSS on the CPU."""

    def __init__(self, device: torch.device):
        self.device = device
        self.peak = 0

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats()
            self.start = torch.cuda.memory_allocated()
        else:
            try:
                ctypes.CDLL("libc.so.6").malloc_trim(0)
            except OSError:
                pass
            import psutil

            self.proc = psutil.Process()
            self.start = self.proc.memory_info().rss
            self.max = self.start
            self.running = True
            self.thread = threading.Thread(target=self._sample, daemon=True)
            self.thread.start()
        return self

    def _sample(self):
        while self.running:
            self.max = max(self.max, self.proc.memory_info().rss)
            time.sleep(0.001)

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.peak = torch.cuda.max_memory_allocated() - self.start
        else:
            self.running = False
            self.thread.join()
            self.max = max(self.max, self.proc.memory_info().rss)
            self.peak = self.max - self.start


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_variant(name, fn, xs, device, per_call):
    fn(xs[0])  # warm-up (allocator, cudnn autotuning, lazy init)
    times, peaks = [], []
    for x in xs:
        with PeakMemory(device) as mem:
            sync(device)
            t0 = time.perf_counter()
            out = fn(x)
            sync(device)
            times.append((time.perf_counter() - t0) / per_call)
        peaks.append(mem.peak)
        del out
    return statistics.median(times), max(peaks)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="resnet50", choices=sorted(LAYERS))
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    p.add_argument("--images", type=int, default=2, help="images timed (after one warm-up)")
    p.add_argument("--batch", type=int, default=1, help="images per call (loop: one by one)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--skip-loop", action="store_true", help="skip the slow straightforward loop")
    p.add_argument("--csv", default=str(Path(__file__).parent / "results" / "bench_cameras.csv"))
    args = p.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = getattr(torchvision.models, args.model)(weights=None).eval().to(device)
    layer = LAYERS[args.model]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(args.batch, 3, 224, 224, generator=g).to(device) for _ in range(args.images)]
    with torch.no_grad():  # each image's own top-1 at 224, passed explicitly: every size is kept
        target = model(xs[0]).argmax(1).tolist()

    def forwards(x):
        with torch.no_grad():
            return [model(resize_to(x, s)) for s in args.sizes]

    cam = Cameras(model, layer, args.sizes, progress=False)
    variants = {"forwards": forwards, "cameras": lambda x: cam(x, target)}
    if not args.skip_loop:
        variants["loop"] = lambda x: cameras_reference(model, x, target, layer, args.sizes)

    results = {}
    for name, fn in variants.items():
        sec, peak = run_variant(name, fn, xs, device, args.batch)
        results[name] = (sec, peak)
        print(f"{name:9s} {sec:8.3f} s/image   peak +{peak / 2**20:9.1f} MiB", flush=True)

    maxdiff = ""
    if "loop" in results:
        a, b = cam(xs[0], target), cameras_reference(model, xs[0], target, layer, args.sizes)
        maxdiff = float((a - b).abs().max())
        print(f"share of non-zero map pixels: {float((b > 0).float().mean()):.3f}")

    fw, ours = results["forwards"][0], results["cameras"][0]
    loop = results.get("loop")
    summary = {
        "cameras_over_forwards": ours / fw,
        "loop_over_cameras": loop[0] / ours if loop else "",
        "memory_cameras_over_loop": results["cameras"][1] / loop[1] if loop and loop[1] else "",
    }
    print(
        f"cameras / forwards = {summary['cameras_over_forwards']:.3f}x"
        + (f"; loop / cameras = {summary['loop_over_cameras']:.1f}x" if loop else "")
        + (f"; peak memory cameras / loop = {summary['memory_cameras_over_loop']:.3f}" if loop else "")
        + (f"; max |cameras - loop| = {maxdiff:.2e}" if loop else "")
    )

    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(
                ["timestamp", "host", "device", "device_name", "threads", "torch", "cameras", "model",
                 "sizes", "images", "batch", "variant", "seconds_per_image", "peak_mib",
                 "cameras_over_forwards", "loop_over_cameras", "memory_cameras_over_loop", "max_abs_diff"]
            )
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for name, (sec, peak) in results.items():
            w.writerow(
                [stamp, platform.node(), device.type, dev_name, torch.get_num_threads(), torch.__version__,
                 __version__, args.model, " ".join(map(str, args.sizes)), args.images, args.batch, name,
                 f"{sec:.4f}", f"{peak / 2**20:.1f}", f"{summary['cameras_over_forwards']:.4f}",
                 f"{summary['loop_over_cameras']:.3f}" if loop else "",
                 f"{summary['memory_cameras_over_loop']:.4f}" if loop else "", maxdiff]
            )
    print(f"appended to {path} (cpu count {os.cpu_count()})")


if __name__ == "__main__":
    main()
