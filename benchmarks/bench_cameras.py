"""Benchmark: CAMERAS (``cameras.Cameras``) against its floor and the straightforward loop.

Three variants run in the same process on the same images and model:

* ``forwards``  — the floor: bare forward passes (no_grad) at every size, nothing else;
* ``cameras``   — :class:`cameras.Cameras` (batched over sizes' images, no graph below the
  layer, exact fusion without K x H x W tensors);
* ``loop``      — :func:`cameras.reference.cameras_reference`: per image, per size, full
  forward + backward (parameter gradients included), upsampled copies stored per size,
  like the authors' code.

``cameras_bf16`` (``--bf16``) is :class:`cameras.Cameras` with ``dtype=torch.bfloat16``
(mixed precision below the layer), timed and compared with the float32 maps.

Reported per variant: seconds per image (median over images after a warm-up), peak memory
above the starting point (CUDA: ``max_memory_allocated``; CPU: resident set size sampled every
millisecond in a background thread, after ``malloc_trim``), and the ratios
``cameras / forwards``, ``loop / cameras`` (speed-up) and ``cameras / loop`` (memory).
Rows are appended to a CSV (default ``benchmarks/results/bench_cameras.csv``).

Usage::

    python benchmarks/bench_cameras.py                       # ResNet-50, 8 sizes, CPU
    python benchmarks/bench_cameras.py --device cuda --models resnet50 densenet121 vgg16 \
        --batches 1 16 64 --bf16 --images 4                  # the issue-13 table on a GPU
    python benchmarks/bench_cameras.py --sizes 224 324 424 524 --threads 2 --profile

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


def bench_one(model_name, batch, args, device):
    """Rows of one (model, batch size): floor, ours (fp32, optionally bf16), the loop."""
    torch.manual_seed(0)
    model = getattr(torchvision.models, model_name)(weights=None).eval().to(device)
    layer = LAYERS[model_name]
    g = torch.Generator().manual_seed(0)
    xs = [torch.randn(batch, 3, 224, 224, generator=g).to(device) for _ in range(args.images)]
    with torch.no_grad():  # each image's own top-1 at 224, passed explicitly: every size is kept
        target = model(xs[0]).argmax(1).tolist()

    def forwards(x):
        with torch.no_grad():
            return [model(resize_to(x, s)) for s in args.sizes]

    cam = Cameras(model, layer, args.sizes, progress=False)
    variants = {"forwards": forwards, "cameras": lambda x: cam(x, target)}
    if args.bf16:
        low = Cameras(model, layer, args.sizes, progress=False, dtype=torch.bfloat16)
        variants["cameras_bf16"] = lambda x: low(x, target)
    if not args.skip_loop and batch == 1:
        variants["loop"] = lambda x: cameras_reference(model, x, target, layer, args.sizes)
    results = {}
    for name, fn in variants.items():
        results[name] = run_variant(name, fn, xs, device, batch)
        print(f"{model_name:12s} batch {batch:3d} {name:13s} {results[name][0]:8.4f} s/image   "
              f"peak +{results[name][1] / 2**20:9.1f} MiB", flush=True)
    extra = {}
    if "loop" in results:
        extra["max_abs_diff"] = float((cam(xs[0], target) - cameras_reference(model, xs[0], target, layer,
                                                                            args.sizes)).abs().max())
    if args.bf16:
        a, b = cam(xs[0], target), low(xs[0], target)
        extra["bf16_max_abs"], extra["bf16_mean_abs"] = float((a - b).abs().max()), float((a - b).abs().mean())
    return results, extra


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["resnet50"], choices=sorted(LAYERS))
    p.add_argument("--sizes", type=int, nargs="+", default=list(DEFAULT_SIZES))
    p.add_argument("--images", type=int, default=2, help="calls timed (after one warm-up)")
    p.add_argument("--batches", type=int, nargs="+", default=[1], help="images per call (loop: batch 1 only)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    p.add_argument("--bf16", action="store_true", help="also time and compare Cameras(dtype=bfloat16)")
    p.add_argument("--skip-loop", action="store_true", help="skip the slow straightforward loop")
    p.add_argument("--profile", action="store_true", help="print where the time of one call goes")
    p.add_argument("--csv", default=str(Path(__file__).parent / "results" / "bench_cameras.csv"))
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    for model_name in args.models:
        for batch in args.batches:
            results, extra = bench_one(model_name, batch, args, device)
            write_rows(args, device, model_name, batch, results, extra)
            if args.profile:
                profile_call(model_name, batch, args, device)


def profile_call(model_name, batch, args, device):
    """The operators that take the time of one Cameras call (torch.profiler, self time)."""
    from torch.profiler import ProfilerActivity, profile

    model = getattr(torchvision.models, model_name)(weights=None).eval().to(device)
    cam = Cameras(model, LAYERS[model_name], args.sizes, progress=False)
    x = torch.randn(batch, 3, 224, 224, device=device)
    acts = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with profile(activities=acts) as prof:
        cam(x, [0] * batch)
    key = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    print(prof.key_averages().table(sort_by=key, row_limit=15))


def write_rows(args, device, model_name, batch, results, extra):
    fw, ours = results["forwards"][0], results["cameras"][0]
    loop = results.get("loop")
    summary = {"cameras_over_forwards": ours / fw, "loop_over_cameras": loop[0] / ours if loop else "",
               "memory_cameras_over_loop": results["cameras"][1] / loop[1] if loop and loop[1] else "",
               "bf16_speedup": ours / results["cameras_bf16"][0] if "cameras_bf16" in results else ""}
    print(f"{model_name} batch {batch}: cameras / forwards = {summary['cameras_over_forwards']:.3f}x"
          + (f"; loop / cameras = {summary['loop_over_cameras']:.1f}x" if loop else "")
          + (f"; bf16 {summary['bf16_speedup']:.2f}x faster, max err {extra['bf16_max_abs']:.3f}"
             if summary["bf16_speedup"] != "" else ""))
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    path = Path(args.csv)
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = ["timestamp", "host", "device", "device_name", "threads", "torch", "cameras", "model", "sizes",
            "images", "batch", "variant", "seconds_per_image", "peak_mib", "cameras_over_forwards",
            "loop_over_cameras", "memory_cameras_over_loop", "max_abs_diff", "bf16_speedup",
            "bf16_max_abs", "bf16_mean_abs"]
    new = not path.exists()
    with path.open("a", newline="") as f:
        w = csv.writer(f)
        if new:
            w.writerow(cols)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        for name, (sec, peak) in results.items():
            w.writerow([stamp, platform.node(), device.type, dev_name, torch.get_num_threads(), torch.__version__,
                        __version__, model_name, " ".join(map(str, args.sizes)), args.images, batch, name,
                        f"{sec:.4f}", f"{peak / 2**20:.1f}", *[_fmt(summary[k]) for k in list(summary)[:3]],
                        _fmt(extra.get("max_abs_diff", "")), _fmt(summary["bf16_speedup"]),
                        _fmt(extra.get("bf16_max_abs", "")), _fmt(extra.get("bf16_mean_abs", ""))])
    print(f"appended to {path} (cpu count {os.cpu_count()})")


def _fmt(v):
    return f"{v:.4g}" if isinstance(v, float) else v


if __name__ == "__main__":
    main()
