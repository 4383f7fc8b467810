"""Export to ONNX: torch model -> model.onnx (checked) -> model.sim.onnx (onnxsim) + export.json; parity of
the implementations; optional int8 quantisation.

Use cases (each returns a typed record, :class:`etdeploy.records.Record`):

- :func:`export_dir` -> :class:`ExportRun` (``etdeploy export``; the manifest ``export.json``)
- :func:`parity_from_dirs` -> :class:`ParityRun` (``etdeploy parity``; ``parity.json``)
- :func:`quantize_model` -> :class:`QuantizeRun` (``etdeploy quantize``)
- :func:`check_export_of` -> :class:`ExportMatch` (``etdeploy explain --onnx F --model D``: is F D's export?)

An imported model's exports keep the user's interface (:mod:`etdeploy.export.interface`).
"""

from etdeploy.export.interface import Interface, interface_of
from etdeploy.export.manifest import (
    MANIFEST_FILE,
    ONNX_FILE,
    SIM_FILE,
    ExportedModel,
    ExportRun,
    ExportSet,
    OnnxFileInfo,
    SimplificationCheck,
    load_export_manifest,
    read_export,
)
from etdeploy.export.match import ExportMatch, check_export_of
from etdeploy.export.onnx_export import (
    INPUT_NAME,
    OUTPUT_NAME,
    ExportConfig,
    ExportResult,
    compare_onnx_outputs,
    export_dir,
    export_model,
    export_onnx_bytes,
    prepare_for_export,
    simplify_onnx_bytes,
)
from etdeploy.export.parity import (
    OnnxMember,
    PairResult,
    ParityReport,
    ParityRun,
    check_parity,
    parity_from_dirs,
    read_parity,
)
from etdeploy.export.quantize import QuantizeRun, quantize_model
from etdeploy.export.summary import onnx_summary, op_histogram, parameter_count

__all__ = [
    "INPUT_NAME", "MANIFEST_FILE", "ONNX_FILE", "OUTPUT_NAME", "SIM_FILE", "ExportConfig", "ExportMatch",
    "ExportResult", "ExportRun", "ExportSet", "ExportedModel", "Interface", "OnnxFileInfo", "OnnxMember",
    "PairResult", "ParityReport", "ParityRun", "QuantizeRun", "SimplificationCheck", "check_export_of",
    "check_parity", "compare_onnx_outputs", "export_dir", "export_model", "export_onnx_bytes", "interface_of",
    "load_export_manifest", "onnx_summary", "op_histogram", "parameter_count", "parity_from_dirs",
    "prepare_for_export", "quantize_model", "read_export", "read_parity", "simplify_onnx_bytes",
]

