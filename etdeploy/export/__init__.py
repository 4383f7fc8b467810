"""Export to ONNX: torch model -> model.onnx (checked) -> model.sim.onnx (onnxsim) + export.json."""

from etdeploy.export.onnx_export import (
    INPUT_NAME,
    MANIFEST_FILE,
    ONNX_FILE,
    OUTPUT_NAME,
    SIM_FILE,
    ExportConfig,
    ExportResult,
    compare_onnx_outputs,
    export_model,
    export_onnx_bytes,
    load_export_manifest,
    prepare_for_export,
    simplify_onnx_bytes,
)
from etdeploy.export.summary import onnx_summary, op_histogram, parameter_count

__all__ = [
    "INPUT_NAME", "MANIFEST_FILE", "ONNX_FILE", "OUTPUT_NAME", "SIM_FILE", "ExportConfig", "ExportResult",
    "compare_onnx_outputs", "export_model", "export_onnx_bytes", "load_export_manifest", "onnx_summary",
    "op_histogram", "parameter_count", "prepare_for_export", "simplify_onnx_bytes",
]
# int8 quantisation (optional stage): etdeploy.export.quantize.quantize_int8 / compare_int8
