"""Command line: ``cameras explain IMAGE... [options]`` and ``cameras models``.

``cameras explain`` computes a CAMERAS map (Jalwana et al., CVPR 2021) for each image and
writes, per image, into ``--out``:

* ``<stem>_overlay.png``: the map blended (jet colour map) onto the model's input crop;
* ``<stem>_map.npy``: the map itself, float32 in [0, 1], at the resolution of the
  preprocessed input (e.g. 224 x 224 for ``efficientnet_lite0``).

It prints each image's top-5 classes with probabilities (at the model's native input size)
and which class was explained. ``--target auto`` explains each image's top-1 class at the
first of ``--sizes`` and, as in the authors' code, drops sizes whose top-1 differs; an index
or a class name (``--target 281``, ``--target tabby``) explains that class at every size.

The default model, ``efficientnet_lite0``, works offline. Mistakes (an unknown model, an
unreadable image, bad sizes, CUDA requested but unavailable, weights that cannot be
downloaded) end with a one-line message and exit status 2.

Examples::

    cameras explain cat.jpg dog.png --out maps/
    cameras explain cat.jpg --model resnet50 --sizes 224 324 424 --target tabby --device cuda
    python -m cameras models
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
MAX_SIZE = 4096


class CLIError(Exception):
    """A user mistake: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="cameras",
        description="CAMERAS saliency maps (Jalwana et al., CVPR 2021) for ImageNet classifiers.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    ex = sub.add_parser(
        "explain",
        help="compute CAMERAS maps for images",
        description="Compute a CAMERAS map per image; write <stem>_overlay.png and <stem>_map.npy.",
    )
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    ex.add_argument(
        "--model", "-m", default="efficientnet_lite0",
        help=f"model name (default: efficientnet_lite0, works offline); one of: {', '.join(MODELS)}",
    )
    ex.add_argument(
        "--target", "-t", default="auto",
        help="class to explain: 'auto' (top-1), an ImageNet index 0..999 or a class name",
    )
    ex.add_argument(
        "--sizes", "-s", type=int, nargs="+", default=None, metavar="PX",
        help="input sizes (shorter side, pixels); the first is the reference "
        "(default: 224 324 ... 924 as in the authors' code)",
    )
    ex.add_argument("--device", "-d", default="auto", help="auto (default), cpu, cuda or cuda:N")
    ex.add_argument("--out", "-o", default="cameras_output", help="output folder (default: ./cameras_output)")
    ex.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the map (default 0.5)")
    ex.add_argument("--top-k", type=int, default=5, help="how many classes to print (default 5)")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")

    sub.add_parser("models", help="list the available models and their layers")
    return parser


# ----------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------
def _check_sizes(sizes: Sequence[int] | None, min_size: int) -> tuple[int, ...]:
    from .core import DEFAULT_SIZES

    if sizes is None:
        return tuple(DEFAULT_SIZES)
    bad = [s for s in sizes if s < min_size or s > MAX_SIZE]
    if bad:
        raise CLIError(
            f"--sizes must be between {min_size} and {MAX_SIZE} pixels for this model; got {bad[0]}"
        )
    if len(set(sizes)) != len(sizes):
        raise CLIError(f"--sizes must not repeat a size; got {' '.join(map(str, sizes))}")
    return tuple(sizes)


def _check_target(target: str, num_classes: int) -> int | None:
    from .data import find_class

    t = target.strip()
    if t.lower() == "auto":
        return None
    if t.lstrip("-").isdigit():
        idx = int(t)
        if not 0 <= idx < num_classes:
            raise CLIError(f"--target must be 'auto' or a class index in 0..{num_classes - 1}; got {idx}")
        return idx
    try:
        return find_class(t)
    except ValueError as err:
        raise CLIError(f"--target: {err}") from None


def _output_stems(paths: Sequence[Path]) -> list[str]:
    """Output name stems, unique: a repeated stem gets ``_1``, ``_2``, ... appended."""
    stems: list[str] = []
    used: set[str] = set()
    for p in paths:
        base = p.stem or "image"
        stem, k = base, 0
        while stem in used:
            k += 1
            stem = f"{base}_{k}"
        used.add(stem)
        stems.append(stem)
    return stems


# ----------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------
def _cmd_models() -> int:
    from .models import model_table

    print(model_table())
    return 0


def _cmd_explain(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from PIL import Image
    from tqdm.auto import tqdm

    from .images import load_image
    from .models import get_spec, load_model, resolve_device
    from .viz import overlay

    try:
        spec = get_spec(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    sizes = _check_sizes(args.sizes, spec.min_size)
    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must be in [0, 1]; got {args.alpha}")
    if not 1 <= args.top_k <= 1000:
        raise CLIError(f"--top-k must be in 1..1000; got {args.top_k}")
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise CLIError(str(err)) from None
    target = _check_target(args.target, 1000)

    # read every image first, so a bad file stops the run before any work
    paths = [Path(p) for p in args.images]
    images, errors = [], []
    for p in paths:
        try:
            images.append(load_image(p))
        except (OSError, ValueError) as err:
            errors.append(str(err))
    if errors:
        raise CLIError("; ".join(errors))

    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise CLIError(f"cannot create the output folder {out}: {err}") from None

    try:
        lm = load_model(spec.name, device=device)
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from None

    from .core import Cameras

    cam = Cameras(lm.model, layer=lm.layer, sizes=sizes, progress=False)
    print(
        f"model {lm.name} (layer {lm.layer}, input {lm.input_size} px, weights: {lm.weights}) "
        f"on {device}; sizes {' '.join(map(str, sizes))}",
        flush=True,
    )
    stems = _output_stems(paths)
    bar = tqdm(
        list(zip(paths, stems, images, strict=True)), desc="CAMERAS", unit="image",
        disable=args.no_progress, file=sys.stderr,
    )
    for path, stem, img in bar:
        x = lm.preprocess(img)[None].to(device)
        top = lm.topk(x, k=args.top_k)[0]
        maps = cam(x, targets=target)
        m = maps[0].detach().float().cpu().numpy().astype(np.float32)
        if target is None:
            explained = int(cam.predictions[0, 0])
            kept = int(cam.kept[:, 0].sum())
            why = f"top-1 at {sizes[0]} px; {kept}/{len(sizes)} sizes kept"
        else:
            explained, why = target, f"requested; all {len(sizes)} sizes used"
        map_path = out / f"{stem}_map.npy"
        overlay_path = out / f"{stem}_overlay.png"
        np.save(map_path, m)
        Image.fromarray(overlay(lm.to_image(x), m, alpha=args.alpha)).save(overlay_path, format="PNG")
        lines = [
            f"{path}: explained class {explained} '{lm.classes[explained]}' ({why})",
            f"  top-{args.top_k}:",
        ]
        lines += [f"    {r}. {c:4d} {name:<32s} {100 * p:6.2f}%" for r, (c, name, p) in enumerate(top, 1)]
        lines.append(f"  wrote {overlay_path} and {map_path} ({m.shape[0]}x{m.shape[1]})")
        tqdm.write("\n".join(lines), file=sys.stdout)
        del maps, x
        if device.type == "cuda":
            torch.cuda.empty_cache()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cameras`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else EXIT_USAGE
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    try:
        if args.command == "models":
            return _cmd_models()
        return _cmd_explain(args)
    except CLIError as err:
        print(f"cameras: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("cameras: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # torch.OutOfMemoryError and the like: no traceback, status 1
        if type(err).__name__ == "OutOfMemoryError":
            print(f"cameras: error: out of memory ({err}); try smaller --sizes or --device cpu",
                  file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
