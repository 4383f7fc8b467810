"""Safe image decoding and preprocessing.

Only JPEG and PNG are accepted, the file content must match its extension, and Pillow's
decompression-bomb warning is an error. Images are converted to RGB and resized to the model's
square input size; normalisation uses the per-data-set mean/std recorded in the model's spec.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etdeploy.errors import ImageError

ALLOWED_FORMATS = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG"}
MAX_IMAGE_PIXELS = 64_000_000
MAX_IMAGE_BYTES = 64 * 1024 * 1024


def decode_image(path: str | os.PathLike, size: int) -> np.ndarray:
    """Decode one image file into a ``(3, size, size)`` uint8 array (RGB, bilinear resize)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in ALLOWED_FORMATS:
        raise ImageError(f"unsupported image extension {suffix!r}; allowed: .jpg, .jpeg, .png", path)
    if not path.is_file():
        raise ImageError("image file does not exist", path)
    if path.stat().st_size > MAX_IMAGE_BYTES:
        raise ImageError("image file is larger than the 64 MiB limit", path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as im:
                if im.format != ALLOWED_FORMATS[suffix]:
                    raise ImageError(f"file content is {im.format or 'unknown'}, but the extension says "
                                     f"{ALLOWED_FORMATS[suffix]}", path)
                w, h = im.size
                if w * h > MAX_IMAGE_PIXELS:
                    raise ImageError(f"image is {w}x{h} pixels, above the {MAX_IMAGE_PIXELS} pixel limit", path)
                if im.mode not in ("RGB", "L", "RGBA", "P", "LA", "CMYK", "YCbCr", "I;16", "I"):
                    raise ImageError(f"image mode {im.mode!r} cannot be converted to RGB", path)
                im.load()
                if im.mode in ("I;16", "I"):
                    arr = np.asarray(im, dtype=np.float64)
                    rng = max(float(arr.max()), 1.0)
                    im = Image.fromarray((arr / rng * 255).astype(np.uint8))
                rgb = im.convert("RGB")
                if rgb.size != (size, size):
                    rgb = rgb.resize((size, size), Image.BILINEAR)
                arr = np.asarray(rgb, dtype=np.uint8)
    except ImageError:
        raise
    except Image.DecompressionBombWarning as exc:
        raise ImageError(f"image looks like a decompression bomb: {exc}", path) from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image looks like a decompression bomb: {exc}", path) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not a decodable image (corrupt or not an image)", path) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}", path) from exc
    return np.ascontiguousarray(arr.transpose(2, 0, 1))


def decode_images(paths: Sequence[Path], size: int, *, progress: bool = False, desc: str = "decode") -> np.ndarray:
    """``len(paths)`` files -> ``(N, 3, size, size)`` uint8."""
    from etdeploy.progress import progress_bar

    out = np.empty((len(paths), 3, size, size), dtype=np.uint8)
    for i, p in enumerate(progress_bar(paths, desc=desc, enabled=progress)):
        out[i] = decode_image(p, size)
    return out


def channel_mean_std(images: np.ndarray) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and std of ``(N, 3, H, W)`` uint8 images, on the [0, 1] scale (6 decimals)."""
    x = images.astype(np.float64) / 255.0
    mean = x.mean(axis=(0, 2, 3))
    std = x.std(axis=(0, 2, 3))
    std = np.where(std < 1e-6, 1.0, std)
    return (tuple(round(float(v), 6) for v in mean), tuple(round(float(v), 6) for v in std))  # type: ignore[return-value]


def normalise(images_uint8, mean: Iterable[float], std: Iterable[float]):
    """``(N, 3, H, W)`` uint8 tensor -> float32 tensor ``(x/255 - mean)/std``."""
    import torch

    x = torch.as_tensor(images_uint8).to(torch.float32).div_(255.0)
    m = torch.tensor(list(mean), dtype=torch.float32).view(1, 3, 1, 1)
    s = torch.tensor(list(std), dtype=torch.float32).view(1, 3, 1, 1)
    return (x - m) / s


@dataclass(frozen=True)
class ImageSplit:
    """Decoded images of one split: ``images`` ``(N, 3, S, S)`` uint8, ``labels`` ``(N,)`` int64."""

    images: np.ndarray
    labels: np.ndarray
    paths: tuple[Path, ...]

    def __len__(self) -> int:
        return int(self.labels.shape[0])


def load_split(samples, size: int, *, progress: bool = False, desc: str = "decode") -> ImageSplit:
    paths = tuple(s.path for s in samples)
    images = decode_images(paths, size, progress=progress, desc=desc)
    labels = np.asarray([s.label for s in samples], dtype=np.int64)
    return ImageSplit(images=images, labels=labels, paths=paths)


def load_split_images(dataset, split: str, size: int, *, progress: bool = True) -> ImageSplit:
    """Decode one split of ``dataset`` (a :class:`~etdeploy.data.sources.DataSet`) at ``size`` pixels."""
    return load_split(dataset.split(split), size, progress=progress, desc=f"decode {split}")
