"""Onboard inference packaging: a verified flight bundle of an ONNX model (docs/method.md §10).

Use cases: :func:`package_export` / :func:`package_onnx` / :func:`package_model` -> :class:`PackageRun`
(``etdeploy package``); :func:`time_bundle` -> :class:`BundleTiming`. Modules: :mod:`.codegen` (C99 from
emx-onnx-cgen, heap-free), :mod:`.csource` (header, harness, Makefile), :mod:`.vectors` (golden vectors
from ONNX Runtime), :mod:`.toolchains` (per-ISA build, run and measurement), :mod:`.icd` (README).
"""

from etdeploy.packaging.bundle import (
    MEASURED_FILE,
    PACKAGE_FILE,
    BundleTiming,
    ModelInterface,
    PackageRun,
    TargetSummary,
    package_export,
    package_model,
    package_onnx,
    read_measured,
    read_package,
    time_bundle,
)
from etdeploy.packaging.toolchains import IsaCheck, SectionSizes
from etdeploy.packaging.vectors import GoldenVectors

__all__ = ["MEASURED_FILE", "PACKAGE_FILE", "BundleTiming", "GoldenVectors", "IsaCheck", "ModelInterface",
           "PackageRun", "SectionSizes", "TargetSummary", "package_export", "package_model", "package_onnx",
           "read_measured", "read_package", "time_bundle"]
