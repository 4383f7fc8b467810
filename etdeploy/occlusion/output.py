"""Writing occlusion maps: ``.npy`` arrays and PNG overlays (matplotlib, Agg).

Kept apart from the numerical code; :func:`etdeploy.occlusion.explain_images` writes the JSON summary.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from etdeploy.fileio import atomic_write_bytes
from etdeploy.occlusion.result import OcclusionResult


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.asarray(array), allow_pickle=False)
    return buffer.getvalue()


def overlay_png(image_uint8: np.ndarray, values: np.ndarray, result: OcclusionResult, title: str = "",
                cmap: str = "jet", alpha: float = 0.5) -> bytes:
    """PNG of the ``(3, H, W)`` uint8 image with the ``(ny, nx)`` map drawn over it.

    Map cell ``(i, j)`` is centred on its patch's centre and spans one stride.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    h, w = result.image_hw
    half = result.patch / 2.0
    s = result.stride / 2.0
    extent = (result.starts_x[0] + half - s, result.starts_x[-1] + half + s,
              result.starts_y[-1] + half + s, result.starts_y[0] + half - s)
    fig = Figure(figsize=(4.8, 4.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    ax.imshow(np.asarray(image_uint8).transpose(1, 2, 0), extent=(0, w, h, 0), interpolation="nearest")
    shown = ax.imshow(values, cmap=cmap, alpha=alpha, extent=extent, interpolation="nearest")
    ax.set_xlim(0, w)
    ax.set_ylim(h, 0)
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # a class name is text, never a formula
    fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def map_files(stem: str, result: OcclusionResult, image_uint8: np.ndarray, map_kind: str, class_name: str,
              target: int | None = None) -> dict[str, bytes]:
    """``{"<stem>.npy": map (float64) bytes, "<stem>.png": overlay bytes}``: what :func:`write_map` writes
    (an archive worker returns them to the process that writes them)."""
    values = result.map(map_kind, target)
    title = f"{class_name} ({map_kind}, {result.mode}, P={result.patch}, S={result.stride})"
    return {f"{stem}.npy": npy_bytes(values), f"{stem}.png": overlay_png(image_uint8, values, result, title)}


def write_map(out_dir: Path, stem: str, result: OcclusionResult, image_uint8: np.ndarray, map_kind: str,
              class_name: str, target: int | None = None) -> dict[str, str]:
    """Write ``<stem>.npy`` (map, float64) and ``<stem>.png`` (overlay) into ``out_dir``; returns their names."""
    for name, data in map_files(stem, result, image_uint8, map_kind, class_name, target).items():
        atomic_write_bytes(out_dir / name, data)
    return {"npy": f"{stem}.npy", "png": f"{stem}.png"}
