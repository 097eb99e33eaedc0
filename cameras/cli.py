"""Command line: ``cameras explain IMAGE... [options]``, ``cameras models``, ``cameras --version``.

``cameras explain`` computes a CAMERAS map (Jalwana et al., CVPR 2021) for each photo, **at the
photo's own resolution**:

* *Input.* The whole image (no crop, aspect ratio kept) goes to the model at its native scale
  -- shorter side = the model's input size (224 px for ``efficientnet_lite0``) -- and at the
  paper's zoom factors: ``--sizes`` (default 224 324 ... 924, the authors' sizes on the
  224-px scale) times ``input size / 224``. Each size is a resampling of the photo itself
  (antialiased when it shrinks the photo, bicubic when it enlarges it), so the larger sizes
  see real detail where the photo has it.
* *Output.* Per image, into ``--out``:

  - ``<name>_map.npy``: the map, float32 in [0, 1], ``H x W`` = the photo's own size (the
    longer side at most ``--max-side`` pixels if given);
  - ``<name>_overlay.png``: the map blended onto the photo (``--cmap``, ``--alpha``), with a
    band below naming the explained class, its probability and a colour bar;
    ``--side-by-side`` puts the photo on the left;
  - ``explanations.csv``: one row per input (path, outputs, explained class and
    probability, sizes kept, top-k), rewritten after every image.

  Output paths mirror the inputs' paths relative to their common folder
  (``a/cat.jpg`` and ``b/cat.jpg`` -> ``out/a/cat_*`` and ``out/b/cat_*``); two inputs in one
  folder with the same stem (``cat.jpg``, ``cat.png``) keep their extension
  (``cat.jpg_map.npy``). Every file is written to a temporary file in the same folder and
  renamed into place, so an interrupted or failing write (read-only folder, full disk, a
  folder named like an output) leaves no partial file; it ends the run with one line on
  stderr and exit status 1.

It prints each image's top-k classes with probabilities (whole image at the native scale).
``--target auto`` explains the top-1 class there and, as in the authors' code, drops the sizes
whose top-1 differs; an index (``--target 281``) or a class name explains that class at every
size. Names match exactly first, case included (``cardigan`` is class 474, ``Cardigan`` the
corgi, 264), then ignoring case (``CARDIGAN`` is ambiguous: both are listed), then as a
unique word or part of a name (``golden retr``); WordNet ids (``n02123045``) work too.

Images are read one at a time, so memory is bounded by the largest image, not by their
number. The default model, ``efficientnet_lite0``, works offline. Mistakes (an unknown model,
an unreadable image, bad sizes, CUDA requested but unavailable, weights that cannot be
downloaded) end with a one-line message and exit status 2, before any work. When stdout is
closed early (``cameras explain ... | head -1``) the run ends quietly (status 141).

Examples::

    cameras explain holiday/*.jpg --out maps/
    cameras explain cat.jpg --target tabby --side-by-side --cmap inferno --max-side 1024
    cameras explain cat.jpg --model resnet50 --sizes 224 324 424 --device cuda
    python -m cameras models
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import os
import re
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

__all__ = ["main", "build_parser"]

EXIT_USAGE = 2
EXIT_FAILURE = 1
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool stopped by `| head`
MAX_SIZE = 4096
INDEX_FILE = "explanations.csv"
_WNID = re.compile(r"^n\d{8}$")


class CLIError(Exception):
    """A mistake or a failure: printed as one line; ``status`` is the exit status."""

    def __init__(self, message: str, status: int = EXIT_USAGE):
        super().__init__(message)
        self.status = status


def build_parser() -> argparse.ArgumentParser:
    from . import __version__
    from .models import MODELS

    parser = argparse.ArgumentParser(
        prog="cameras",
        description="CAMERAS saliency maps (Jalwana et al., CVPR 2021) for ImageNet classifiers.",
    )
    parser.add_argument("--version", action="version", version=f"cameras {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    ex = sub.add_parser(
        "explain", help="compute CAMERAS maps for images",
        description="Compute a CAMERAS map per image at the image's own resolution; write "
        "<name>_map.npy, <name>_overlay.png and explanations.csv.",
    )
    ex.add_argument("images", nargs="+", metavar="IMAGE", help="image files")
    ex.add_argument("--model", "-m", default="efficientnet_lite0",
                    help=f"model (default: efficientnet_lite0, works offline); one of: {', '.join(MODELS)}")
    ex.add_argument("--target", "-t", default="auto",
                    help="class to explain: 'auto' (top-1), an index 0..999, a class name "
                    "(exact, case-sensitive first) or a WordNet id")
    ex.add_argument("--sizes", "-s", type=int, nargs="+", default=None, metavar="PX",
                    help="zoom factors as sizes on the paper's 224-px scale, scaled by the model's "
                    "input size / 224; the first is the reference (default: 224 324 ... 924)")
    ex.add_argument("--device", "-d", default="auto", help="auto (default), cpu, cuda or cuda:N")
    ex.add_argument("--out", "-o", default="cameras_output",
                    help="output folder (default: ./cameras_output)")
    ex.add_argument("--max-side", type=int, default=None, metavar="PX",
                    help="longer side of the saved map and overlay (default: the image's own size)")
    ex.add_argument("--cmap", default="jet", help="matplotlib colour map of the overlay (default jet)")
    ex.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the map (default 0.5)")
    ex.add_argument("--side-by-side", action="store_true",
                    help="put the photo left of the overlay in the PNG")
    ex.add_argument("--top-k", type=int, default=5, help="how many classes to print (default 5)")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar")
    sub.add_parser("models", help="list the available models and their layers")
    return parser


# ----------------------------------------------------------------------------------------
# argument checks
# ----------------------------------------------------------------------------------------
def _check_sizes(sizes: Sequence[int] | None, spec) -> tuple[int, ...]:
    """``--sizes`` (224-px scale) -> shorter sides for this model (``* input_size / 224``).

    The duplicate-size rule is the API's (:class:`cameras.Cameras` refuses repeated sizes).
    """
    from .core import DEFAULT_SIZES
    from .core import _check_sizes as check

    sizes = tuple(DEFAULT_SIZES) if sizes is None else tuple(sizes)
    bad = [s for s in sizes if s < spec.min_size or s > MAX_SIZE]
    if bad:
        raise CLIError(f"--sizes must be between {spec.min_size} and {MAX_SIZE} pixels for "
                       f"this model; got {bad[0]}")
    try:
        check(sizes)
    except ValueError as err:
        raise CLIError(f"--sizes: {err}") from None
    return tuple(round(s * spec.input_size / 224) for s in sizes)


def _check_target(target: str, classes: Sequence[str]) -> int | None:
    """``--target``: ``auto``, a decimal index (``str.isdecimal``), a WordNet id or a name."""
    from .core import class_index
    from .data import imagenet_wnids

    t = target.strip()
    if t.lower() == "auto":
        return None
    if _WNID.match(t) and len(classes) == 1000:
        wnids = imagenet_wnids()
        if t not in wnids:
            raise CLIError(f"--target: unknown WordNet id {t!r}")
        return wnids.index(t)
    try:
        return class_index(t, classes)
    except ValueError as err:
        raise CLIError(f"--target: {err}") from None


def _check_options(args: argparse.Namespace) -> None:
    import matplotlib

    if not 0.0 <= args.alpha <= 1.0:
        raise CLIError(f"--alpha must be in [0, 1]; got {args.alpha}")
    if not 1 <= args.top_k <= 1000:
        raise CLIError(f"--top-k must be in 1..1000; got {args.top_k}")
    if args.max_side is not None and not 8 <= args.max_side <= 65500:
        raise CLIError(f"--max-side must be in 8..65500 pixels; got {args.max_side}")
    if args.cmap not in matplotlib.colormaps:
        raise CLIError(f"--cmap: unknown matplotlib colour map {args.cmap!r} (e.g. jet, inferno, "
                       "viridis, turbo)")


def _probe_image(path: Path) -> str | None:
    """``None`` if Pillow recognises ``path`` as an image (header only), else the reason."""
    import warnings

    from PIL import Image, UnidentifiedImageError

    if not path.exists():
        return f"image file not found: {path}"
    if path.is_dir():
        return f"{path} is a directory, not an image file"
    try:
        with warnings.catch_warnings():  # large photos are expected: one is held at a time
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path):
                return None
    except UnidentifiedImageError:
        return f"{path} is not an image file Pillow can read"
    except (OSError, Image.DecompressionBombError) as err:
        return f"cannot read image {path}: {err}"


# ----------------------------------------------------------------------------------------
# output names and atomic writes
# ----------------------------------------------------------------------------------------
def _output_stems(paths: Sequence[Path]) -> list[Path]:
    """Output name stems (relative to ``--out``) that mirror the inputs' paths.

    Paths are taken relative to the inputs' common folder; a stem shared by two inputs of
    one folder (``cat.jpg``, ``cat.png``) becomes the file name (``cat.jpg``, ``cat.png``).
    Comparisons ignore case, so the names also stay apart on case-insensitive disks.
    """
    absolute = [Path(os.path.abspath(p)) for p in paths]
    base = Path(os.path.commonpath([str(a.parent) for a in absolute]))
    rel = [a.relative_to(base) for a in absolute]
    stems = [r.parent / r.stem for r in rel]
    clashes = _clashes(stems)
    stems = [r if i in clashes else s for i, (r, s) in enumerate(zip(rel, stems, strict=True))]
    clashes = _clashes(stems)
    if clashes:  # a file name met another file's stem ("cat.jpg" and "cat.jpg.png")
        folders = {rel[i].parent for i in clashes}
        stems = [r if r.parent in folders else s for r, s in zip(rel, stems, strict=True)]
    return stems


def _clashes(stems: Sequence[Path]) -> set[int]:
    seen: dict[str, list[int]] = {}
    for i, s in enumerate(stems):
        seen.setdefault(str(s).casefold(), []).append(i)
    return {i for idx in seen.values() if len(idx) > 1 for i in idx}


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, write: Callable[[io.BufferedWriter], None]) -> None:
    """Write ``path`` through a temporary file in its folder and ``os.replace``.

    On any error the temporary file is removed and a :class:`CLIError` (status 1) names the
    file and the reason; an existing ``path`` is left as it was.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
        if hasattr(os, "fchmod"):  # mkstemp's 0o600 -> what a plain open() would give
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        tmp = None
    except OSError as err:
        reason = err.strerror or str(err)
        if isinstance(err, IsADirectoryError) or path.is_dir():
            reason = "a folder of that name is in the way"
        raise CLIError(f"cannot write {path}: {reason}", EXIT_FAILURE) from None
    finally:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)


class _Stream:
    """A file seen only through ``write``."""

    def __init__(self, f):
        self.write = f.write


def _check_out_dir(out: Path) -> None:
    """Create ``--out`` and check that a file can be written there, before any work."""
    if out.exists() and not out.is_dir():
        raise CLIError(f"--out {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise CLIError(f"cannot write to the output folder {out}: {err.strerror or err}") from None


# ----------------------------------------------------------------------------------------
# one image
# ----------------------------------------------------------------------------------------
@dataclass
class _Job:
    """What every image of a run shares."""

    lm: object  # LoadedModel
    cam: object  # Cameras
    target: int | None
    args: argparse.Namespace
    out: Path


def _out_shape(height: int, width: int, max_side: int | None) -> tuple[int, int]:
    if max_side is None or max(height, width) <= max_side:
        return height, width
    scale = max_side / max(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


def _load_photo(path: Path, largest: int, max_side: int | None):
    """``(image, (H, W))``: the photo as 8-bit RGB (:func:`cameras.images.load_image`'s
    conversions, EXIF orientation applied) and its full size, upright.

    With ``--max-side`` a JPEG is decoded at a reduced scale (Pillow's ``draft``: 1/2, 1/4
    or 1/8) when that still leaves at least the pixels the map and the largest model input
    need; the image is then smaller than its full size.
    """
    import math
    import warnings

    from PIL import Image, ImageOps

    from .images import load_image

    try:
        with warnings.catch_warnings():  # large photos are expected: one is held at a time
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                w, h = im.size
                if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):  # EXIF: turned by 90 degrees
                    w, h = h, w
                if max_side is not None:
                    need = min(1.0, max(largest / min(w, h), max_side / max(w, h)))
                    im.draft("RGB", (math.ceil(im.size[0] * need), math.ceil(im.size[1] * need)))
                im.load()
                rgb = load_image(ImageOps.exif_transpose(im))
                img = rgb.copy() if rgb is im else rgb
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        raise CLIError(f"cannot read image {path}: {err}", EXIT_FAILURE) from None
    return img, (h, w)


def _model_input(img, largest: int, lm):
    """The photo as a normalised ``(1, 3, h, w)`` tensor, shorter side at most ``largest``
    (Pillow's antialiased bicubic shrink; Cameras resamples from there per size)."""
    import numpy as np
    import torch
    from PIL import Image

    w, h = img.size
    if min(w, h) > largest:
        s = largest / min(w, h)
        img = img.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.BICUBIC,
                         reducing_gap=3.0)
    x = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float().div_(255)
    return lm.normalize(x)[None].to(lm.device)


def _explain_image(job: _Job, path: Path) -> tuple:
    """Load one photo, compute its map at the output size; returns the pieces to save."""
    import torch
    from PIL import Image

    img, (H, W) = _load_photo(path, max(job.cam.sizes), job.args.max_side)
    shape = _out_shape(H, W, job.args.max_side)
    x = _model_input(img, max(job.cam.sizes), job.lm)
    if shape != img.size[::-1]:
        img = img.resize(shape[::-1], Image.Resampling.BICUBIC, reducing_gap=3.0)
    try:
        cap = job.cam.capture(x, job.target)
    except ValueError as err:  # e.g. the memory guard for a very elongated photo
        raise CLIError(f"{path}: {err}", EXIT_FAILURE) from None
    del x
    m = job.cam.fuse(replace(cap, out_shape=shape), target=0)[0]
    m = m.detach().float().cpu().numpy()
    probs = cap.logits[0, 0].float().softmax(dim=0).cpu()
    explained = int(cap.targets[0, 0])
    kept = int(cap.kept[:, 0].sum())
    del cap
    p, i = torch.topk(probs, job.args.top_k)
    top = [(int(c), job.lm.classes[int(c)], float(q)) for q, c in zip(p, i, strict=True)]
    return img, m, explained, float(probs[explained]), kept, top, (H, W)


def _colormap_lut(cmap: str):
    """``(256, 3)`` uint8 colours of ``cmap`` (matplotlib's own 256-entry binning)."""
    import matplotlib
    import numpy as np

    return np.rint(matplotlib.colormaps[cmap](np.arange(256) / 255.0)[:, :3] * 255).astype(np.uint8)


def _blend(img, m, alpha: float, lut):
    """``(1 - alpha) * photo + alpha * colour(map)`` in row blocks (bounded extra memory)."""
    import numpy as np
    from PIL import Image

    photo = np.asarray(img)
    out = np.empty_like(photo)
    rows = max(1, 2**22 // max(1, photo.shape[1]))
    for y in range(0, photo.shape[0], rows):
        idx = np.minimum((m[y : y + rows] * 256).astype(np.int32), 255)
        mix = (1.0 - alpha) * photo[y : y + rows] + alpha * lut[idx].astype(np.float32)
        out[y : y + rows] = np.clip(np.rint(mix), 0, 255).astype(np.uint8)
    return Image.fromarray(out)


def _fit_font(draw, text: str, width: int, size: int):
    from PIL import ImageFont

    while True:
        font = ImageFont.load_default(size=size)
        if size <= 8 or draw.textlength(text, font=font) <= width:
            return font
        size = max(8, int(size * 0.85))


def _annotate(panel, title: str, lut):
    """``panel`` with a band below: ``title`` and a colour bar from 0 to 1."""
    import numpy as np
    from PIL import Image, ImageDraw

    W, H = panel.size
    fs = int(min(max(12, W / 45), 160))
    pad = max(2, fs // 3)
    y0 = 2 * pad + int(1.25 * fs)  # colour bar below the title line
    band = Image.new("RGB", (W, y0 + fs + pad), "white")
    draw = ImageDraw.Draw(band)
    font = _fit_font(draw, title, W - 2 * pad, fs)
    draw.text((pad, pad), title, fill="black", font=font)
    small = _fit_font(draw, "saliency 0", W // 3, max(8, int(fs * 0.8)))
    label0 = draw.textlength("saliency 0", font=small)
    label1 = draw.textlength("1", font=small)
    x0, x1 = int(2 * pad + label0), int(W - 2 * pad - label1)
    if x1 > x0 + 1:
        bar = lut[np.linspace(0, 255, x1 - x0).round().astype(int)][None].repeat(fs, axis=0)
        band.paste(Image.fromarray(bar), (x0, y0))
        draw.text((pad, y0), "saliency 0", fill="black", font=small)
        draw.text((x1 + pad, y0), "1", fill="black", font=small)
    out = Image.new("RGB", (W, H + band.height), "white")
    out.paste(panel, (0, 0))
    out.paste(band, (0, H))
    return out


def _render(job: _Job, img, m, title: str):
    from PIL import Image

    lut = _colormap_lut(job.args.cmap)
    over = _blend(img, m, job.args.alpha, lut)
    if job.args.side_by_side:
        both = Image.new("RGB", (2 * img.width, img.height), "white")
        both.paste(img, (0, 0))
        both.paste(over, (img.width, 0))
        over = both
    return _annotate(over, title, lut)


def _save_outputs(job: _Job, stem: Path, img, m, title: str) -> tuple[Path, Path]:
    import numpy as np

    map_path = job.out / stem.parent / f"{stem.name}_map.npy"
    overlay_path = job.out / stem.parent / f"{stem.name}_overlay.png"
    # through a plain .write() (numpy's tofile() reports a full disk without errno)
    _atomic_write(map_path, lambda f: np.save(_Stream(f), m.astype(np.float32, copy=False)))
    png = _render(job, img, m, title)
    level = 1 if png.width * png.height > 2e7 else 6  # huge PNGs: faster, somewhat larger
    _atomic_write(overlay_path, lambda f: png.save(f, format="PNG", compress_level=level))
    return map_path, overlay_path


def _index_rows(rows: list[dict], top_k: int) -> bytes:
    fields = ["input", "map", "overlay", "height", "width", "map_height", "map_width",
              "explained_class", "explained_name", "explained_prob", "how", "sizes_kept"]
    fields += [f"top{r}_{c}" for r in range(1, top_k + 1) for c in ("class", "name", "prob")]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue().encode("utf-8")


def _explain_one(job: _Job, path: Path, stem: Path) -> dict:
    """Explain, save, print one image; returns its row of the index file."""
    from tqdm.auto import tqdm

    from .models import label

    img, m, explained, prob, kept, top, (H, W) = _explain_image(job, path)
    sizes = job.cam.sizes
    name = job.lm.classes[explained]
    how = (f"top-1 at {sizes[0]} px; {kept}/{len(sizes)} sizes kept" if job.target is None
           else f"requested; all {len(sizes)} sizes used")
    title = f"{name} (class {explained}): p = {100 * prob:.1f}% - CAMERAS, {label(job.lm.name)}"
    map_path, overlay_path = _save_outputs(job, stem, img, m, title)
    lines = [f"{path}: explained class {explained} '{name}' (p = {100 * prob:.2f}%; {how})",
             f"  top-{job.args.top_k}:"]
    lines += [f"    {r}. {c:4d} {n:<32s} {100 * p:6.2f}%" for r, (c, n, p) in enumerate(top, 1)]
    lines.append(f"  wrote {overlay_path} and {map_path} ({m.shape[0]}x{m.shape[1]})")
    tqdm.write("\n".join(lines), file=sys.stdout)
    row = {"input": str(path), "map": str(map_path.relative_to(job.out)),
           "overlay": str(overlay_path.relative_to(job.out)), "height": H, "width": W,
           "map_height": m.shape[0], "map_width": m.shape[1], "explained_class": explained,
           "explained_name": name, "explained_prob": f"{prob:.6f}",
           "how": "auto" if job.target is None else "requested", "sizes_kept": kept}
    for r, (c, n, p) in enumerate(top, 1):
        row.update({f"top{r}_class": c, f"top{r}_name": n, f"top{r}_prob": f"{p:.6f}"})
    return row


# ----------------------------------------------------------------------------------------
# commands
# ----------------------------------------------------------------------------------------
def _cmd_models() -> int:
    from .models import model_table

    print(model_table())
    return 0


def _inputs(images: Sequence[str]) -> list[Path]:
    """The input paths (each file once), after checking every header: a bad file stops the
    run before any work, with all problems in one line."""
    paths, seen, errors = [], set(), []
    for p in map(Path, images):
        problem = _probe_image(p)
        if problem:
            errors.append(problem)
            continue
        key = p.resolve()
        if key in seen:
            print(f"cameras: note: {p} is given more than once; explained once", file=sys.stderr)
            continue
        seen.add(key)
        paths.append(p)
    if errors:
        raise CLIError("; ".join(errors))
    return paths


def _setup(args: argparse.Namespace) -> _Job:
    """Check everything that can be checked before work; load the model."""
    from .core import Cameras
    from .models import get_spec, load_model, resolve_device

    try:
        spec = get_spec(args.model)
    except ValueError as err:
        raise CLIError(str(err)) from None
    sizes = _check_sizes(args.sizes, spec)
    _check_options(args)
    try:
        device = resolve_device(args.device)
    except ValueError as err:
        raise CLIError(str(err)) from None
    from .data import imagenet_classes

    target = _check_target(args.target, imagenet_classes())
    args.paths = _inputs(args.images)
    out = Path(args.out)
    _check_out_dir(out)
    try:
        lm = load_model(spec.name, device=device)
    except (RuntimeError, ValueError) as err:
        raise CLIError(str(err)) from None
    cam = Cameras(lm.model, layer=lm.layer, sizes=sizes, progress=False, antialias=True,
                  classes=lm.classes)
    return _Job(lm, cam, target, args, out)


def _cmd_explain(args: argparse.Namespace) -> int:
    from tqdm.auto import tqdm

    job = _setup(args)
    lm, sizes = job.lm, job.cam.sizes
    print(f"model {lm.name} (layer {lm.layer}, input {lm.input_size} px, weights: {lm.weights}) "
          f"on {lm.device}; sizes {' '.join(map(str, sizes))} (shorter side, px)", flush=True)
    paths = args.paths
    stems = _output_stems(paths)
    rows: list[dict] = []
    bar = tqdm(list(zip(paths, stems, strict=True)), desc="CAMERAS", unit="image",
               disable=args.no_progress, file=sys.stderr)
    for path, stem in bar:
        rows.append(_explain_one(job, path, stem))
        _atomic_write(job.out / INDEX_FILE, lambda f: f.write(_index_rows(rows, args.top_k)))
        if lm.device.type == "cuda":
            import torch

            torch.cuda.empty_cache()
    print(f"index: {job.out / INDEX_FILE} ({len(rows)} image{'s' if len(rows) != 1 else ''})")
    return 0


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null so that the final flush is silent."""
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``cameras`` console script; returns the exit status."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help / --version (0) or a usage error (2)
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
        return err.status
    except BrokenPipeError:
        _quiet_stdout()
        return EXIT_BROKEN_PIPE
    except KeyboardInterrupt:
        print("cameras: interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # torch.OutOfMemoryError and the like: no traceback, status 1
        if type(err).__name__ == "OutOfMemoryError":
            print(f"cameras: error: out of memory ({err}); try --max-side, smaller --sizes or "
                  "--device cpu", file=sys.stderr)
            return EXIT_FAILURE
        raise


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
