"""Rover-camera perturbations at graded severities, seeded (docs/method.md §12.2).

Every perturbation maps one ``(3, H, W)`` uint8 RGB image (the layout of
:func:`etdeploy.data.images.load_split_images`) to another, at severity ``1`` (mild) .. :data:`MAX_SEVERITY`
(severe); severity ``0`` returns the image unchanged, bit for bit. On ``x = image / 255`` in ``[0, 1]``
(the result is rounded back to uint8, clipped to ``[0, 255]``):

- ``noise`` (sensor noise): shot noise, ``Poisson(x · photons) / photons``, plus read noise ``N(0, σ²)``.
- ``brightness`` (over-exposure): ``x · 2^ev`` (``ev`` stops), saturating at white.
- ``defocus`` (out-of-focus optics): correlation with a normalised disk of radius ``r`` pixels (anti-aliased
  edge, ``w = clip(r + ½ - |d|, 0, 1)``), edges reflected.
- ``motion_blur`` (rover or mast motion during exposure): correlation with a normalised line of ``L`` pixels
  through the centre at a random angle (bilinear samples along the line), edges reflected.
- ``jpeg`` (re-compression on the downlink): Pillow JPEG encode at quality ``q``, decode.
- ``contrast`` (dust, haze): blend towards the image's mean grey, ``m + c · (x - m)``.

Lengths (disk radius, line length) are given for a 64-pixel image and scale with the image side, so a
severity means the same blur relative to the field of view at any input size. Randomness (noise, the
motion angle) comes from one generator per ``(seed, perturbation, severity, image index)``
(``numpy.random.SeedSequence``), so a perturbed image does not depend on which other images are perturbed
with it, and two calls give the same bytes.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from etdeploy.errors import ConfigError
from etdeploy.vocab import MAX_SEVERITY, PERTURBATIONS, choices_text

__all__ = [
    "MAX_SEVERITY",
    "PERTURBATIONS",
    "REGISTRY",
    "Perturbation",
    "disk_kernel",
    "line_kernel",
    "perturb_image",
    "perturb_images",
    "severity_text",
]

#: Image side the blur lengths below are given for.
REFERENCE_SIDE = 64

NOISE_SIGMA = (0.02, 0.04, 0.06, 0.09, 0.12)
NOISE_PHOTONS = (400.0, 200.0, 100.0, 50.0, 25.0)
BRIGHTNESS_STOPS = (0.5, 1.0, 1.5, 2.0, 2.5)
DEFOCUS_RADIUS = (0.75, 1.25, 1.75, 2.5, 3.5)
MOTION_LENGTH = (3.0, 5.0, 7.0, 9.0, 13.0)
JPEG_QUALITY = (40, 25, 15, 10, 6)
CONTRAST_KEEP = (0.7, 0.5, 0.35, 0.22, 0.12)


def _unit(image: np.ndarray) -> np.ndarray:
    return image.astype(np.float64) / 255.0


def _uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)


def _scaled(length: float, side: int) -> float:
    return length * side / REFERENCE_SIDE


def disk_kernel(radius: float) -> np.ndarray:
    """Normalised disk of ``radius`` pixels, anti-aliased edge: ``(2⌈r⌉+1, 2⌈r⌉+1)`` float64 summing to 1."""
    half = int(np.ceil(radius))
    y, x = np.mgrid[-half:half + 1, -half:half + 1]
    w = np.clip(radius + 0.5 - np.hypot(x, y), 0.0, 1.0)
    return w / w.sum()


def line_kernel(length: float, angle: float) -> np.ndarray:
    """Normalised line of ``length`` pixels through the centre at ``angle`` radians (bilinear samples):
    ``(2⌈L/2⌉+1, 2⌈L/2⌉+1)`` float64 summing to 1."""
    half = int(np.ceil(length / 2.0))
    size = 2 * half + 1
    k = np.zeros((size, size))
    t = np.linspace(-(length - 1) / 2.0, (length - 1) / 2.0, max(2, int(np.ceil(4 * length))))
    xs = half + t * np.cos(angle)
    ys = half - t * np.sin(angle)
    x0 = np.floor(xs).astype(int)
    y0 = np.floor(ys).astype(int)
    fx = xs - x0
    fy = ys - y0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (0, 1, (1 - fy) * fx), (1, 0, fy * (1 - fx)), (1, 1, fy * fx)):
        yy = np.clip(y0 + dy, 0, size - 1)
        xx = np.clip(x0 + dx, 0, size - 1)
        np.add.at(k, (yy, xx), w)
    return k / k.sum()


def _filtered(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from scipy.ndimage import correlate

    return _uint8(correlate(_unit(image), kernel[None], mode="reflect"))


def _noise(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    x = _unit(image)
    photons = NOISE_PHOTONS[s - 1]
    shot = rng.poisson(x * photons) / photons
    return _uint8(shot + rng.normal(0.0, NOISE_SIGMA[s - 1], size=x.shape))


def _brightness(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return _uint8(_unit(image) * 2.0 ** BRIGHTNESS_STOPS[s - 1])


def _defocus(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    return _filtered(image, disk_kernel(_scaled(DEFOCUS_RADIUS[s - 1], image.shape[-1])))


def _motion_blur(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    angle = float(rng.uniform(0.0, np.pi))
    return _filtered(image, line_kernel(_scaled(MOTION_LENGTH[s - 1], image.shape[-1]), angle))


def _jpeg(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image.transpose(1, 2, 0))).save(buffer, format="JPEG",
                                                                        quality=JPEG_QUALITY[s - 1])
    buffer.seek(0)
    with Image.open(buffer) as im:
        return np.ascontiguousarray(np.asarray(im.convert("RGB"), dtype=np.uint8).transpose(2, 0, 1))


def _contrast(image: np.ndarray, s: int, rng: np.random.Generator) -> np.ndarray:
    x = _unit(image)
    m = x.mean()
    return _uint8(m + CONTRAST_KEEP[s - 1] * (x - m))


@dataclass(frozen=True)
class Perturbation:
    """One perturbation: ``apply(image (3, H, W) uint8, severity >= 1, rng) -> (3, H, W) uint8``, what it
    models, and ``parameters(severity, side)``: its setting at a severity, as text."""

    name: str
    models: str
    apply: Callable[[np.ndarray, int, np.random.Generator], np.ndarray]
    parameters: Callable[[int, int], str]


#: The perturbations by name (keys: :data:`etdeploy.vocab.PERTURBATIONS`).
REGISTRY: dict[str, Perturbation] = {p.name: p for p in (
    Perturbation("noise", "sensor noise (shot + read)", _noise,
                 lambda s, side: f"{NOISE_PHOTONS[s - 1]:g} photons/full scale + sigma {NOISE_SIGMA[s - 1]:g}"),
    Perturbation("brightness", "over-exposure", _brightness,
                 lambda s, side: f"+{BRIGHTNESS_STOPS[s - 1]:g} stops (x{2.0 ** BRIGHTNESS_STOPS[s - 1]:.2f})"),
    Perturbation("defocus", "defocus blur (disk)", _defocus,
                 lambda s, side: f"disk radius {_scaled(DEFOCUS_RADIUS[s - 1], side):.3g} px"),
    Perturbation("motion_blur", "motion blur (line, random angle)", _motion_blur,
                 lambda s, side: f"line {_scaled(MOTION_LENGTH[s - 1], side):.3g} px"),
    Perturbation("jpeg", "JPEG re-compression", _jpeg, lambda s, side: f"quality {JPEG_QUALITY[s - 1]}"),
    Perturbation("contrast", "low contrast (dust, haze)", _contrast,
                 lambda s, side: f"contrast x{CONTRAST_KEEP[s - 1]:g} towards mean grey"),
)}


def _check(name: str, severity: int) -> Perturbation:
    if name not in REGISTRY:
        raise ConfigError(f"unknown perturbation {name!r}; choose {choices_text(PERTURBATIONS)}")
    if isinstance(severity, bool) or not isinstance(severity, (int, np.integer)) or not 0 <= severity <= MAX_SEVERITY:
        raise ConfigError(f"perturbation severity must be an integer in 0..{MAX_SEVERITY}, got {severity!r}")
    return REGISTRY[name]


def severity_text(name: str, severity: int, side: int) -> str:
    """The setting of ``name`` at ``severity`` on a ``side``-pixel image (``"clean"`` at 0)."""
    p = _check(name, severity)
    return "clean" if severity == 0 else p.parameters(severity, side)


def _rng(seed: int, name: str, severity: int, index: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, zlib.crc32(name.encode()), severity, index]))


def perturb_image(image: np.ndarray, name: str, severity: int, *, seed: int = 0, index: int = 0) -> np.ndarray:
    """One ``(3, H, W)`` uint8 image perturbed by ``name`` at ``severity`` (a copy, the input unchanged);
    the randomness is that of ``(seed, name, severity, index)``."""
    p = _check(name, severity)
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[0] != 3:
        raise ConfigError(f"images to perturb must be uint8 (3, H, W), got {image.dtype} {tuple(image.shape)}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0 or index < 0:
        raise ConfigError(f"perturbation seed and image index must be integers >= 0, got {seed!r} and {index!r}")
    if severity == 0:
        return image.copy()
    out = p.apply(image, int(severity), _rng(int(seed), name, int(severity), int(index)))
    return np.ascontiguousarray(out, dtype=np.uint8)


def perturb_images(images: np.ndarray, name: str, severity: int, *, seed: int = 0,
                   indices: Sequence[int] | None = None) -> np.ndarray:
    """``(N, 3, H, W)`` uint8 -> ``(N, 3, H, W)`` uint8, image ``i`` perturbed with the randomness of image
    index ``indices[i]`` (default ``i``; give the images' indices in their split when perturbing a subset)."""
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] != 3:
        raise ConfigError(f"images to perturb must be uint8 (N, 3, H, W), got {images.dtype} {tuple(images.shape)}")
    indices = range(len(images)) if indices is None else indices
    if len(indices) != len(images):
        raise ConfigError(f"{len(indices)} image indices for {len(images)} images")
    _check(name, severity)
    if severity == 0:
        return images.copy()
    out = np.empty_like(images)
    for i, (image, index) in enumerate(zip(images, indices)):
        out[i] = perturb_image(image, name, severity, seed=seed, index=int(index))
    return out
