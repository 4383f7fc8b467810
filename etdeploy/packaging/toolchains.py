"""Build and run a bundle's golden-vector check per instruction set, and measure what the linker sees.

For each ISA of :data:`etdeploy.packaging.csource.ISAS` whose compiler (and qemu-user runner) is on
``PATH``, :func:`check_isa` runs the bundle's own ``c/Makefile`` (``make check`` or
``make check-<isa>``, objects in a scratch ``BUILD`` folder so the bundle is not touched), then reads:

- the harness's summary line (vectors, max |delta logit|, label mismatches) and its exit status;
- the C logits it wrote, for the largest distance in float32 units in the last place (ULP) from
  ONNX Runtime's logits (:func:`ulp_distance`);
- section sizes of the two model objects (``etd_model.o``, ``etd_model_data.o``; harness and C
  library excluded) from the cross toolchain's ``size -A``: ``text`` (.text*), ``rodata``
  (.rodata*, .sdata2, .srodata*), ``data`` (.data*, .sdata*), ``bss`` (.bss*, .sbss*); unwind
  tables, notes and comments are not counted;
- stack from ``-fstack-usage``: ``stack_bytes`` = the entry point's frame + the largest frame of
  any other model function (the generated call graph is two deep: entry -> node function; libm
  calls such as ``powf`` in LRN are not counted).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from etdeploy.packaging.codegen import ENTRY
from etdeploy.packaging.csource import MODEL_SOURCES, Isa
from etdeploy.records import Record

_SUMMARY = re.compile(r"vectors (\d+) max_abs_delta (\S+) label_mismatches (\d+) logit_violations (\d+) "
                      r"tolerance (\S+) (PASS|FAIL)")
MAKE_TIMEOUT_S = 900


@dataclass(frozen=True)
class SectionSizes(Record):
    """Bytes of the model's code and data by kind (see the module docstring)."""

    text: int
    rodata: int
    data: int
    bss: int

    @property
    def rom(self) -> int:
        """Non-volatile memory: code + constants + initial values of initialised data."""
        return self.text + self.rodata + self.data

    @property
    def ram(self) -> int:
        """Static RAM: initialised + zero-initialised data (activations are static ``.bss``)."""
        return self.data + self.bss

    def to_dict(self):
        return {**super().to_dict(), "rom": self.rom, "ram": self.ram}


@dataclass(frozen=True)
class IsaCheck(Record):
    """The golden-vector check on one ISA. ``status``: ``passed``, ``failed`` or ``not run`` (``detail``
    says why); figures are 0/absent when not run."""

    isa: str
    title: str
    status: str
    detail: str
    compiler: str
    flags: str
    runner: str
    vectors: int = 0
    max_abs_logit_delta: float = 0.0
    max_ulp: int = 0
    label_mismatches: int = 0
    logit_violations: int = 0
    sizes: SectionSizes | None = None
    entry_frame_bytes: int = 0
    stack_bytes: int = 0


def ordered_bits(x: np.ndarray) -> np.ndarray:
    """float32 -> int64 whose order is the floats' order and whose difference counts ULPs."""
    bits = np.ascontiguousarray(x, dtype=np.float32).view(np.int32).astype(np.int64)
    return np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)


def ulp_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Largest distance in float32 ULPs between corresponding elements of ``a`` and ``b``."""
    if a.size == 0:
        return 0
    return int(np.abs(ordered_bits(a) - ordered_bits(b)).max())


def compiler_version(cc: str) -> str:
    """First line of ``cc --version`` ('' when it cannot run)."""
    try:
        out = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60, check=False).stdout
    except OSError:
        return ""
    return out.splitlines()[0].strip() if out else ""


def missing_tools(isa: Isa) -> list[str]:
    """Programs ``isa`` needs that are not on PATH (make, compiler, size, runner)."""
    return [t for t in ("make", isa.cc, isa.size, isa.runner) if t and shutil.which(t) is None]


def section_sizes(size_tool: str, objects: list[Path]) -> SectionSizes:
    """Sum of the sections of ``objects`` by kind from ``size -A`` (SysV format)."""
    totals = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    out = subprocess.run([size_tool, "-A", *map(str, objects)], capture_output=True, text=True, check=True,
                         timeout=120).stdout
    for line in out.splitlines():
        parts = line.split()
        if len(parts) < 2 or not parts[0].startswith(".") or not parts[1].isdigit():
            continue
        name, size = parts[0], int(parts[1])
        if name.startswith(".text"):
            totals["text"] += size
        elif name.startswith((".rodata", ".sdata2", ".srodata")):
            totals["rodata"] += size
        elif name.startswith((".data", ".sdata")):
            totals["data"] += size
        elif name.startswith((".bss", ".sbss")):
            totals["bss"] += size
    return SectionSizes(**totals)


def stack_usage(build: Path) -> tuple[int, int]:
    """``(entry frame, entry frame + largest other frame)`` in bytes from the model objects' ``*.su`` files."""
    frames: dict[str, int] = {}
    for source in MODEL_SOURCES:
        su = build / source.replace(".c", ".su")
        if not su.is_file():
            continue
        for line in su.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1].isdigit():
                frames[parts[0].rsplit(":", 1)[-1]] = max(frames.get(parts[0].rsplit(":", 1)[-1], 0), int(parts[1]))
    entry = frames.get(ENTRY, 0)
    others = [v for k, v in frames.items() if k != ENTRY]
    return entry, entry + max(others, default=0)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MAKE", "MFLAGS"))}
    env["LC_ALL"] = "C"
    return env


def check_isa(isa: Isa, c_dir: Path, vectors_dir: Path, build_root: Path, expected_logits: np.ndarray) -> IsaCheck:
    """Build and run the bundle's check for ``isa`` (see the module docstring); ``not run`` if tools are missing."""
    base = {"isa": isa.key, "title": isa.title, "flags": isa.flags, "runner": isa.runner}
    missing = missing_tools(isa)
    if missing:
        return IsaCheck(**base, status="not run", detail=f"not installed: {', '.join(missing)}", compiler="")
    target = "check" if isa.key == "host" else f"check-{isa.key}"
    # make runs in c_dir: every path it is given must be absolute (a relative bundle path is not)
    c_dir, vectors_dir, build_root = (Path(p).resolve() for p in (c_dir, vectors_dir, build_root))
    proc = subprocess.run(["make", "-s", "-C", str(c_dir), f"BUILD={build_root}", f"VECTORS={vectors_dir}", target],
                          capture_output=True, text=True, timeout=MAKE_TIMEOUT_S, check=False, env=_env())
    build = build_root / isa.key
    compiler = compiler_version(isa.cc)
    match = _SUMMARY.search(proc.stdout)
    if match is None:
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        return IsaCheck(**base, status="failed", detail=f"make {target} failed (exit {proc.returncode}): {tail}",
                        compiler=compiler)
    n, labels, violations = int(match[1]), int(match[3]), int(match[4])
    logits = np.fromfile(build / "logits.f32", dtype="<f4").reshape(expected_logits.shape)
    delta = float(np.abs(logits.astype(np.float64) - expected_logits.astype(np.float64)).max())
    passed = proc.returncode == 0 and match[6] == "PASS"
    entry, stack = stack_usage(build)
    sizes = section_sizes(isa.size, [build / s.replace(".c", ".o") for s in MODEL_SOURCES])
    detail = (f"make {target}: {n} vectors, max |delta logit| {delta:.3g}, {labels} label mismatch(es)"
              + ("" if passed else f", {violations} vector(s) over the tolerance"))
    return IsaCheck(**base, status="passed" if passed else "failed", detail=detail, compiler=compiler,
                    vectors=n, max_abs_logit_delta=delta, max_ulp=ulp_distance(logits, expected_logits),
                    label_mismatches=labels, logit_violations=violations, sizes=sizes, entry_frame_bytes=entry,
                    stack_bytes=stack)
