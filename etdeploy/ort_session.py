"""One factory for ONNX Runtime sessions, with fixed, reproducible settings.

:func:`make_session` builds every ORT session etdeploy runs: CPU provider, a fixed number of intra-op
threads (``threads``), one inter-op thread, sequential execution, one graph optimisation level
(``opt_level``), ORT's own log limited to fatal messages. Defaults are the *reference* settings used
for checks (export, parity, quantisation, fuzzing), as in ONNX Runtime's own quantisation tools:

    make_session(model)                                   # 1 thread, ORT_DISABLE_ALL, no spinning

The occlusion executor asks for its own settings explicitly (``threads=2, opt_level="all"`` by
default there). Thread spinning is off unless ``allow_spinning``: with spinning on, the idle sessions
of an occlusion run (a dozen, called in turn) steal the cores from the active one (docs/method.md §6.2).

Failures surface as :class:`~etdeploy.errors.OnnxModelError`: at creation, and from ``run`` through
:func:`checked_session_class` (a graph can pass ``onnx.checker`` and still fail in ORT at run time:
that is bad input, not an internal error). A path is loaded with
:func:`etdeploy.onnx_safety.load_onnx_checked` first.
"""

from __future__ import annotations

import functools
import numbers
import os
from typing import Any

from etdeploy.errors import ConfigError, OnnxModelError
from etdeploy.onnx_safety import first_line, load_onnx_checked

__all__ = ["OPT_LEVELS", "checked_session_class", "make_session", "session_options"]

OPT_LEVELS = ("disable", "basic", "extended", "all")


def session_options(*, threads: int = 1, opt_level: str = "disable", allow_spinning: bool = False):
    """``onnxruntime.SessionOptions`` with the settings described in the module docstring.

    ``threads`` >= 1 intra-op threads; ``opt_level`` one of :data:`OPT_LEVELS` (``disable`` =
    ``ORT_DISABLE_ALL``, ``all`` = ``ORT_ENABLE_ALL``); anything else -> :class:`ConfigError`.
    """
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, numbers.Integral) or threads < 1:
        raise ConfigError(f"threads must be an integer >= 1, got {threads!r}")
    levels = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }
    if opt_level not in levels:
        raise ConfigError(f"unknown graph optimisation level {opt_level!r}; choose one of {', '.join(OPT_LEVELS)}")
    spin = "1" if allow_spinning else "0"
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = levels[opt_level]
    options.add_session_config_entry("session.intra_op.allow_spinning", spin)
    options.add_session_config_entry("session.inter_op.allow_spinning", spin)
    options.log_severity_level = 4
    return options


def make_session(model: Any, *, threads: int = 1, opt_level: str = "disable", allow_spinning: bool = False):
    """``ModelProto | path -> onnxruntime.InferenceSession`` (CPU provider) whose ``run`` raises
    :class:`OnnxModelError` on ORT failures.

    ``model``: a checked ``onnx.ModelProto``, or a path (checked with ``load_onnx_checked`` first).
    Defaults: 1 intra-op thread, graph optimisations off (``ORT_DISABLE_ALL``), no thread spinning.
    """
    import onnx

    if isinstance(model, (str, os.PathLike)):
        model = load_onnx_checked(model)
    elif not isinstance(model, onnx.ModelProto):
        raise OnnxModelError(f"expected an ONNX ModelProto or a path, got {type(model).__name__}")
    options = session_options(threads=threads, opt_level=opt_level, allow_spinning=allow_spinning)
    try:
        return checked_session_class()(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise OnnxModelError(f"onnxruntime cannot load the model: {first_line(exc)}") from exc


@functools.lru_cache(maxsize=1)
def checked_session_class():
    """``onnxruntime.InferenceSession`` whose ``run`` reports ONNX Runtime failures as :class:`OnnxModelError`.

    A graph can pass ``onnx.checker`` and session creation and still fail at run time (a declared
    input shape that no real input has, a Conv ``group`` larger than its channels...); such a model
    is bad input, not an internal error.
    """
    import onnxruntime as ort

    class CheckedInferenceSession(ort.InferenceSession):
        def run(self, output_names, input_feed, run_options=None):
            try:
                return super().run(output_names, input_feed, run_options)
            except Exception as exc:
                if not type(exc).__module__.startswith("onnxruntime"):
                    raise
                raise OnnxModelError(f"onnxruntime failed to run the model: {first_line(exc)}") from exc

    return CheckedInferenceSession
