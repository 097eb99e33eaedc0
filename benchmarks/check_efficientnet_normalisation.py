"""Which input normalisation do the offline EfficientNet-Lite weights expect? Measure it.

For each model and each candidate normalisation, the top-1 / top-5 accuracy on the ImageNet
sample (``CAMERAS_IMAGENET_SAMPLE``, default ``../shared/data/imagenet-sample``: one image per
class, labels from the WordNet ids). Images are resized (shorter side to
``round(size / 0.875)``, bilinear, antialiased) and center-cropped exactly as
``cameras.models.LoadedModel.preprocess`` does; only the normalisation changes.

    nice .venv/bin/python benchmarks/check_efficientnet_normalisation.py [--limit N]

The numbers go into the docstring of ``cameras/models.py``; the registry uses the best.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import torch
from tqdm.auto import tqdm

from cameras.data import ImageNetSample
from cameras.models import IMAGENET_MEAN, IMAGENET_STD, load_model

CANDIDATES: dict[str, tuple[tuple[float, ...], tuple[float, ...]]] = {
    "ImageNet mean/std (0.485,0.456,0.406)/(0.229,0.224,0.225)": (IMAGENET_MEAN, IMAGENET_STD),
    "(x - 0.5) / 0.5, i.e. [-1, 1]": ((0.5,) * 3, (0.5,) * 3),
    "(v - 127) / 128 on 0..255 (TF-Lite)": ((127 / 255,) * 3, (128 / 255,) * 3),
    "none: x in [0, 1]": ((0.0,) * 3, (1.0,) * 3),
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2"])
    ap.add_argument("--limit", type=int, default=None, help="use every (1000 // limit)-th image")
    ap.add_argument("--batch-size", type=int, default=50)
    args = ap.parse_args(argv)

    indices = None
    if args.limit:
        step = max(1, 1000 // args.limit)
        indices = list(range(0, 1000, step))[: args.limit]
    results: dict[str, dict[str, tuple[float, float]]] = {}
    for name in args.models:
        lm = load_model(name)
        raw = dataclasses.replace(lm, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))  # -> [0, 1]
        ds = ImageNetSample(transform=raw.preprocess, indices=indices)
        correct1 = dict.fromkeys(CANDIDATES, 0)
        correct5 = dict.fromkeys(CANDIDATES, 0)
        t0 = time.time()
        batches = range(0, len(ds), args.batch_size)
        for start in tqdm(batches, desc=name):
            items = [ds[i] for i in range(start, min(start + args.batch_size, len(ds)))]
            x01 = torch.stack([x for x, _ in items])
            y = torch.tensor([label for _, label in items])
            for cand, (mean, std) in CANDIDATES.items():
                m = torch.tensor(mean).view(1, 3, 1, 1)
                s = torch.tensor(std).view(1, 3, 1, 1)
                with torch.no_grad():
                    logits = lm.model((x01 - m) / s)
                top5 = logits.topk(5, dim=1).indices
                correct1[cand] += int((top5[:, 0] == y).sum())
                correct5[cand] += int((top5 == y[:, None]).any(dim=1).sum())
        n = len(ds)
        results[name] = {c: (100 * correct1[c] / n, 100 * correct5[c] / n) for c in CANDIDATES}
        print(f"{name}: {n} images, input {lm.input_size}, resize {lm.resize_size}, "
              f"{time.time() - t0:.0f} s", flush=True)
        for c, (a1, a5) in results[name].items():
            print(f"  {c}: top-1 {a1:.1f}, top-5 {a5:.1f}", flush=True)

    print(f"\ntop-1 / top-5 accuracy (%) on {n} ImageNet-sample images\n")
    width = max(len(c) for c in CANDIDATES)
    print("normalisation".ljust(width) + "".join(f"  {m:>20}" for m in results))
    for c in CANDIDATES:
        cells = "".join(f"  {results[m][c][0]:>9.1f} / {results[m][c][1]:>6.1f}" for m in results)
        print(c.ljust(width) + cells)
    for m in results:
        best = max(results[m], key=lambda c: results[m][c][0])
        print(f"best for {m}: {best}")


if __name__ == "__main__":
    main()
