"""Use case: a verified flight bundle of an ONNX model (``etdeploy package``; docs/method.md §10).

:func:`package_model` checks everything it can before writing (the ONNX file, the model's interface,
the target ids, the generator's op coverage, the output folder), then, in a folder that appears
atomically (:class:`~etdeploy.fileio.StagedDir`):

- ``model.onnx``: the packaged ONNX file, byte for byte;
- ``c/``: C99 from :func:`~etdeploy.packaging.codegen.generate_c`, the interface header, the
  golden-vector harness and a ``Makefile`` (:mod:`.csource`);
- ``vectors/``: golden vectors from ONNX Runtime (:mod:`.vectors`);
- ``ort/`` (when a target runs ONNX Runtime): ``model.ort`` and the operator config of a minimal
  build, verified on the golden vectors (:mod:`.ort_format`);
- ``measured.json``: per ISA, the check's parity figures, section sizes and stack
  (:mod:`.toolchains`); every ISA whose toolchain is installed is built and run, and a failing one
  aborts the bundle (:class:`~etdeploy.errors.ParityError`, nothing written);
- ``package.json``: the :class:`PackageRun` (this function's result, ``to_dict()``);
- ``README.md``: the interface control document (:mod:`.icd`);
- ``MANIFEST.sha256``: SHA-256 of every other file, ``sha256sum -c`` format.

Everything in those files is a function of the inputs and the installed toolchains: no timestamps,
no absolute paths, so the same inputs give the same bytes; ``ort/model.ort`` only where address
randomisation can be turned off for ONNX Runtime's writer (see :mod:`.ort_format`; ``package.json``
records its check instead of its hash). Timings are machine-dependent: :func:`time_bundle` writes them to ``timing.json``, which the
manifest does not list.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from etdeploy.errors import ExportError, OutputExistsError, ParityError
from etdeploy.packaging.ort_format import OrtFormatCheck
from etdeploy.packaging.toolchains import IsaCheck
from etdeploy.packaging.vectors import DEFAULT_TOLERANCE, DEFAULT_VECTORS, GoldenVectors
from etdeploy.records import Record, read_record

PACKAGE_FORMAT = "etdeploy-package"
MEASURED_FORMAT = "etdeploy-measured"
TIMING_FORMAT = "etdeploy-package-timing"
PACKAGE_FILE = "package.json"
MEASURED_FILE = "measured.json"
TIMING_FILE = "timing.json"
MANIFEST = "MANIFEST.sha256"
README = "README.md"

__all__ = ["MEASURED_FILE", "PACKAGE_FILE", "BundleTiming", "ModelInterface", "PackageRun", "TargetSummary",
           "package_model", "read_measured", "read_package", "time_bundle"]


@dataclass(frozen=True)
class ModelInterface(Record):
    """The model as the C caller sees it: tensor names, shapes, layout, dtype, normalisation, classes."""

    arch: str
    input_name: str
    input_shape: tuple[int, ...]
    output_name: str
    output_shape: tuple[int, ...]
    layout: str
    dtype: str
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]
    precision: str
    output_kind: str = "logits"


@dataclass(frozen=True)
class TargetSummary(Record):
    """One target's fit verdict on the packaged model (:func:`etdeploy.targets.fit_targets`) and the ISA
    check that stands for it (``isa``; empty when none does)."""

    name: str
    processor_isa: str
    fits: bool
    int8_fits: bool
    latency_s: float
    unsupported_ops: tuple[str, ...]
    ort_supported: bool
    isa: str
    advice: str = ""


@dataclass(frozen=True)
class PackageRun(Record):
    """``package.json``: the packaged ONNX file (name, bytes, sha256), the interface, the generator,
    MACs and parameters, the golden vectors, the verdict per target, the check per ISA and the SHA-256
    of every bundle file (except this one and the manifest)."""

    source: dict[str, Any]
    interface: ModelInterface
    generator: dict[str, Any]
    macs: int
    parameters: int
    vectors: GoldenVectors
    targets: dict[str, TargetSummary]
    checks: dict[str, IsaCheck]
    files: dict[str, str]
    ort: OrtFormatCheck | None = None
    format: str = PACKAGE_FORMAT
    format_version: int = 1

    @property
    def passed(self) -> tuple[str, ...]:
        """ISAs whose check passed."""
        return tuple(k for k, c in self.checks.items() if c.status == "passed")

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "passed": list(self.passed)}


@dataclass(frozen=True)
class Measured(Record):
    """``measured.json``: the per-ISA checks (sizes, stack, parity) of a bundle."""

    checks: dict[str, IsaCheck]
    format: str = MEASURED_FORMAT
    format_version: int = 1


@dataclass(frozen=True)
class BundleTiming(Record):
    """``timing.json`` (not in the manifest): CPU seconds per batch-1 inference on this machine, of the
    host C build (``-O2``) and of ONNX Runtime (CPU provider, one thread, all graph optimisations),
    over ``repeat`` passes of the golden vectors."""

    c_seconds: float
    ort_seconds: float
    c_over_ort: float
    repeat: int
    vectors: int
    machine: str
    format: str = TIMING_FORMAT
    format_version: int = 1


def _isa_for(profile_isa: str) -> str:
    """The checked ISA that stands for a profile's processor, by its ISA text ('' when none does)."""
    text = profile_isa.lower()
    if "powerpc" in text or "power architecture" in text:
        return "ppc"
    if "sparc" in text or "leon" in text and "shave" not in text:
        return "sparc"
    if "arm" in text:
        return "arm"
    return ""


def _advice(precision: str, profile: Any, verdict: Any) -> str:
    """What to package for a target instead, when the packaged fp32 model is the wrong choice ('' if it is right)."""
    if precision == "int8":
        return ""
    if not profile.fp32:
        return "no fp32 path on this target: package the int8 model (etdeploy quantize, then package --onnx)"
    if not verdict.fits and verdict.int8_fits:
        return "fp32 does not fit, the int8 estimate does: package the int8 model (etdeploy quantize)"
    return ""


def _interface(proto: Any, arch: str, mean, std, class_names, input_size: int, where: Any, layout: str,
               output_kind: str) -> ModelInterface:
    from etdeploy.onnx_graph import image_input

    name, dims = image_input(proto)
    shape = tuple(d if isinstance(d, int) and d > 0 else 1 for d in dims)
    wanted = (input_size, input_size, 3) if layout == "NHWC" else (3, input_size, input_size)
    if len(shape) != 4 or shape[1:] != wanted:
        raise ExportError(f"ONNX input {name!r} has shape {list(shape)}; the model takes (batch, "
                          f"{', '.join(map(str, wanted))}) ({layout})", where)
    out = proto.graph.output[0]
    out_shape = (1, *tuple(int(d.dim_value) for d in out.type.tensor_type.shape.dim)[1:])
    if out_shape != (1, len(class_names)):
        raise ExportError(f"ONNX output {out.name!r} has shape {list(out_shape)}; the model has {len(class_names)} "
                          "classes", where)
    precision = "int8" if any(n.op_type in ("QuantizeLinear", "QLinearConv") for n in proto.graph.node) else "fp32"
    return ModelInterface(arch=arch, input_name=name, input_shape=(1, *shape[1:]), output_name=out.name,
                          output_shape=out_shape, layout=layout, dtype="float32", mean=tuple(map(float, mean)),
                          std=tuple(map(float, std)), class_names=tuple(class_names), precision=precision,
                          output_kind=output_kind)


def _manifest(root: Path, skip: tuple[str, ...]) -> dict[str, str]:
    from etdeploy.fileio import sha256_file

    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*"))
            if p.is_file() and p.relative_to(root).as_posix() not in skip}


def package_model(*, onnx: str | os.PathLike, dataset: Any, out: str | os.PathLike, target_ids: Sequence[str],
                  arch: str, class_names: Sequence[str], input_size: int, mean, std, vectors: int = DEFAULT_VECTORS,
                  split: str = "test", tolerance: float = DEFAULT_TOLERANCE, isas: Sequence[str] | None = None,
                  targets_dir: str | os.PathLike | None = None, layout: str = "NCHW",
                  output_kind: str = "logits", ort_format: bool = True) -> PackageRun:
    """Write the verified bundle of ``onnx`` (see the module docstring) to the new folder ``out``.

    ``class_names``, ``input_size``, ``mean``, ``std``, ``arch``: the model the ONNX file was exported
    from (:func:`package_export` and :func:`package_onnx` take them from an export or a model folder);
    ``dataset``: where the golden vectors come from (its classes must be the model's); ``isas``: the
    instruction sets to check (default: all of :data:`~etdeploy.packaging.csource.ISA_KEYS`; the host
    is always checked). ``layout``/``output_kind``: how the ONNX file is called (an imported model's
    export keeps the original's NHWC input or softmax output; ``mean``/``std`` are then that input's).
    ``ort_format=False`` leaves out ``ort/`` even for ONNX Runtime targets. An existing ``out`` is refused;
    any failure leaves nothing behind.
    """
    from etdeploy.errors import DataError
    from etdeploy.fileio import (
        StagedDir,
        atomic_write_bytes,
        atomic_write_json,
        atomic_write_text,
        refuse_existing_output,
        sha256_file,
    )
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.packaging import codegen, csource, icd, ort_format, toolchains
    from etdeploy.packaging.vectors import make_vectors
    from etdeploy.targets import fit_targets

    onnx, out = Path(onnx), Path(out)
    if out.exists():
        raise OutputExistsError("refusing to overwrite an existing bundle; choose a new --out", out)
    refuse_existing_output(out)
    proto = load_onnx_checked(onnx)
    interface = _interface(proto, arch, mean, std, class_names, input_size, onnx, layout, output_kind)
    codegen.check_generator_ops(proto, onnx)
    keys = ["host", *[k for k in (isas if isas is not None else csource.ISA_KEYS) if k != "host"]]
    fit = fit_targets(onnx, list(target_ids), targets_dir=targets_dir)
    if tuple(dataset.classes) != tuple(class_names):
        raise DataError(f"data classes {list(dataset.classes)} differ from the model's {list(class_names)}",
                        getattr(dataset, "root", None))
    golden, vector_files, expected = make_vectors(proto, dataset, split=split, count=vectors, input_size=input_size,
                                                  mean=mean, std=std, class_names=tuple(class_names),
                                                  tolerance=tolerance, layout=layout)
    generated = codegen.generate_c(proto, onnx)
    (model_fit,) = fit.models.values()
    targets = {tid: TargetSummary(name=p.name, processor_isa=p.isa, fits=model_fit.verdicts[tid].fits,
                                  int8_fits=model_fit.verdicts[tid].int8_fits,
                                  latency_s=model_fit.verdicts[tid].latency_s,
                                  unsupported_ops=model_fit.verdicts[tid].unsupported_ops,
                                  ort_supported=p.ort_supported, isa=_isa_for(p.isa),
                                  advice=_advice(interface.precision, p, model_fit.verdicts[tid]))
               for tid, p in fit.targets.items()}
    with StagedDir(out) as tmp:
        atomic_write_bytes(tmp / "model.onnx", onnx.read_bytes())
        c_dir = tmp / "c"
        atomic_write_text(c_dir / f"{codegen.ENTRY}.c", generated.model)
        atomic_write_text(c_dir / f"{codegen.ENTRY}_data.c", generated.data)
        atomic_write_text(c_dir / csource.HEADER,
                          csource.header_text(generated.prototype, interface.input_shape[1:], layout,
                                              len(class_names)))
        atomic_write_text(c_dir / csource.HARNESS, csource.HARNESS_TEXT)
        atomic_write_text(c_dir / "Makefile", csource.makefile_text())
        for name, data in vector_files.items():
            atomic_write_bytes(tmp / "vectors" / name, data)
        ort_check = None
        if ort_format and any(p.ort_supported for p in fit.targets.values()):
            ort_format.convert_to_ort(onnx.read_bytes(), tmp / ort_format.ORT_DIR)
            inputs = np.frombuffer(vector_files["inputs.f32"], "<f4").reshape(-1, *interface.input_shape[1:])
            ort_check = ort_format.check_ort_model(tmp / ort_format.ORT_DIR, inputs, expected, tolerance)
            if ort_check.status != "passed":
                raise ParityError(f"the ORT-format model disagrees with the ONNX model on the golden vectors (max "
                                  f"|delta logit| {ort_check.max_abs_logit_delta:.3g}, {ort_check.label_mismatches} "
                                  "label mismatch(es)); no bundle written", onnx)
        with tempfile.TemporaryDirectory(prefix="etdeploy-package-") as build:
            checks = {k: toolchains.check_isa(csource.isa(k), c_dir, tmp / "vectors", Path(build), expected)
                      for k in keys}
        failed = [c for c in checks.values() if c.status == "failed"]
        if failed:
            raise ParityError("the C model failed its golden-vector check on "
                              + "; ".join(f"{c.isa}: {c.detail}" for c in failed) + "; no bundle written", onnx)
        atomic_write_json(tmp / MEASURED_FILE, Measured(checks=checks).to_dict())
        run = PackageRun(
            source={"name": onnx.name, "bytes": onnx.stat().st_size, "sha256": sha256_file(onnx)},
            interface=interface,
            generator={"name": codegen.GENERATOR, "version": generated.generator_version, "entry_point": codegen.ENTRY,
                       "prototype": generated.prototype, "static_activation_buffers": generated.static_buffers,
                       "weights": "const arrays", "heap": False, "cflags": csource.CSTD_FLAGS},
            macs=model_fit.analysis.total_macc, parameters=model_fit.analysis.parameters, vectors=golden,
            targets=targets, checks=checks, ort=ort_check,
            files=_manifest(tmp, (PACKAGE_FILE, README, MANIFEST, f"{ort_format.ORT_DIR}/{ort_format.ORT_MODEL}")))
        atomic_write_text(tmp / README, icd.readme_text(run))
        atomic_write_json(tmp / PACKAGE_FILE, run.to_dict())
        manifest = _manifest(tmp, (MANIFEST, TIMING_FILE))
        atomic_write_text(tmp / MANIFEST, "".join(f"{digest}  {name}\n" for name, digest in manifest.items()))
    return run


def package_export(export_dir: str | os.PathLike, **kwargs: Any) -> PackageRun:
    """:func:`package_model` of an export's ``model.sim.onnx``; the model's interface from its ``export.json``."""
    from etdeploy.export import SIM_FILE, read_export

    export = read_export(export_dir)
    m = export.model
    return package_model(onnx=Path(export_dir) / SIM_FILE, arch=m.arch, class_names=m.class_names,
                         input_size=m.input_size, **_called_as(export.interface, m.mean, m.std), **kwargs)


def _called_as(interface: Any, mean, std) -> dict[str, Any]:
    """Layout, output kind and input normalisation of a deployable called through ``interface`` (an imported
    model's; ``None``: etdeploy's own NCHW/logits contract)."""
    if interface is None:
        return {"layout": "NCHW", "output_kind": "logits", "mean": mean, "std": std}
    mean, std = interface.normalisation(mean, std)
    return {"layout": interface.layout, "output_kind": interface.output, "mean": mean, "std": std}


def package_onnx(onnx: str | os.PathLike, model_dir: str | os.PathLike, *, allow_other_data: bool = False,
                 **kwargs: Any) -> PackageRun:
    """:func:`package_model` of any ONNX file of the model in ``model_dir`` (its spec gives the interface;
    the data set must be the model's unless ``allow_other_data``: :func:`etdeploy.data.check_compatible`)."""
    from etdeploy.data.compat import check_compatible
    from etdeploy.models import load_model
    from etdeploy.onnx_safety import load_onnx_checked

    load_onnx_checked(onnx)  # a missing or unsafe file fails before the model and the data are read
    from etdeploy.export.interface import interface_of

    spec = load_model(model_dir).spec
    check_compatible(spec, kwargs["dataset"], model_dir, split=kwargs.get("split", "test"),
                     allow_other_data=allow_other_data)
    return package_model(onnx=onnx, arch=spec.arch, class_names=spec.class_names, input_size=spec.input_size,
                         **_called_as(interface_of(spec), spec.mean, spec.std), **kwargs)


def read_package(bundle: str | os.PathLike) -> PackageRun:
    """A bundle's ``package.json`` as a :class:`PackageRun` (an :class:`ExportError` naming the file)."""
    return read_record(Path(bundle) / PACKAGE_FILE, PackageRun, what="package record", format=PACKAGE_FORMAT,
                       error=ExportError)


def read_measured(bundle: str | os.PathLike) -> Measured:
    """A bundle's ``measured.json`` (per-ISA checks)."""
    return read_record(Path(bundle) / MEASURED_FILE, Measured, what="measured figures", format=MEASURED_FORMAT,
                       error=ExportError)


def time_bundle(bundle: str | os.PathLike, *, repeat: int = 20) -> BundleTiming:
    """Time the host C build against ONNX Runtime on the bundle's golden vectors; write ``timing.json``.

    Both are batch 1, one thread, CPU time (C: ``clock()`` in the harness; ORT: ``time.process_time``),
    ``repeat`` passes over the vectors after one warm-up pass. Machine-dependent by nature: the file is
    not in the manifest and the bundle's other files do not change.
    """
    import platform
    import subprocess
    import time

    from etdeploy.fileio import atomic_write_json
    from etdeploy.ort_session import make_session

    bundle = Path(bundle).resolve()  # the harness runs from a temporary folder
    run = read_package(bundle)
    shape = run.interface.input_shape
    inputs = np.fromfile(bundle / "vectors" / "inputs.f32", dtype="<f4").reshape(-1, *shape[1:])
    with tempfile.TemporaryDirectory(prefix="etdeploy-time-") as build:
        subprocess.run(["make", "-s", "-C", str(bundle / "c"), f"BUILD={build}", "build-host"], check=True,
                       capture_output=True, timeout=900)
        proc = subprocess.run([str(Path(build) / "host" / "etd_check"), str(bundle / "vectors"),
                               str(Path(build) / "logits.f32"), str(repeat)], capture_output=True, text=True,
                              timeout=3600, check=False)
    line = next((s for s in proc.stdout.splitlines() if s.startswith("seconds_per_inference")), None)
    if line is None:
        raise ExportError(f"the C harness did not time the model: {proc.stderr.strip()}", bundle)
    c_seconds = float(line.split()[1])
    session = make_session(bundle / "model.onnx", threads=1, opt_level="all")
    name = run.interface.input_name
    for x in inputs:
        session.run(None, {name: x[None]})
    start = time.process_time()
    for _ in range(repeat):
        for x in inputs:
            session.run(None, {name: x[None]})
    ort_seconds = (time.process_time() - start) / (repeat * len(inputs))
    timing = BundleTiming(c_seconds=c_seconds, ort_seconds=ort_seconds, c_over_ort=c_seconds / ort_seconds,
                          repeat=repeat, vectors=len(inputs), machine=f"{platform.machine()} {platform.processor()}"
                          .strip())
    atomic_write_json(bundle / TIMING_FILE, timing.to_dict(), overwrite=True)
    return timing
