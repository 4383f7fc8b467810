"""ONNX Runtime sessions with fixed, reproducible settings.

Every session of an occlusion run (naive model, prefix groups, suffix) uses the same options: a fixed
number of intra-op threads, one inter-op thread, sequential execution, the same graph optimisation
level, and ``session.intra_op.allow_spinning = "0"``. Without the last one, the idle sessions' spinning
threads steal the cores from the active one when a dozen sessions are called in turn (METHOD.md 6.2).
"""

from __future__ import annotations

from typing import Any

from etdeploy.errors import ConfigError, OnnxModelError

OPT_LEVELS = ("disable", "basic", "extended", "all")


def session_options(threads: int = 2, opt_level: str = "all"):
    import onnxruntime as ort

    if threads < 1:
        raise ConfigError(f"threads must be >= 1, got {threads}")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if opt_level not in levels:
        raise ConfigError(f"unknown graph optimisation level {opt_level!r}; choose one of {', '.join(OPT_LEVELS)}")
    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = levels[opt_level]
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    so.log_severity_level = 3
    return so


def make_session(model: Any, threads: int = 2, opt_level: str = "all"):
    """``ModelProto -> onnxruntime.InferenceSession`` on the CPU provider."""
    from etdeploy.onnx_safety import checked_session_class

    try:
        # run() failures of ONNX Runtime surface as OnnxModelError (bad input), not internal errors
        return checked_session_class()(model.SerializeToString(), sess_options=session_options(threads, opt_level),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxModelError(f"onnxruntime cannot load the model: {exc}") from exc
