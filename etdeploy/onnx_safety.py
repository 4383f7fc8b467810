"""Safe loading of ONNX files that may come from outside.

Order of checks in :func:`load_onnx_checked` (nothing reaches ONNX Runtime before all of them pass):

1. the path is a regular file no larger than ``max_bytes`` (default 2 GiB, protobuf's own limit);
2. the protobuf parses (``onnx.load`` with external data *not* followed yet);
3. every external-data reference is a relative path inside the model's folder: no absolute path, no
   ``..`` component, no symlink anywhere on the way, the file exists and is a regular file; the
   total size of external data is also bounded by ``max_bytes``;
4. the IR version is one the installed onnxruntime accepts (probed once, see
   :func:`ort_max_ir_version`) and one the onnx checker knows; no graph input or output declares a
   negative dimension or a static size above ``max_bytes``;
5. ``onnx.checker.check_model(full_check=True)`` (type and shape inference over the whole graph).

:func:`etdeploy.ort_session.make_session` builds ORT sessions from a checked model (or a path, checked
here first). :func:`probe_ort_load_in_subprocess` loads an untrusted file in a child process, so a crash
inside ONNX Runtime's C++ cannot take the caller down.
"""

from __future__ import annotations

import functools
import os
import subprocess
import sys
from pathlib import Path, PurePosixPath, PureWindowsPath

from etdeploy.errors import OnnxModelError

MAX_ONNX_BYTES = 2 * 1024**3


@functools.lru_cache(maxsize=1)
def ort_max_ir_version() -> int:
    """Highest ONNX IR version the installed onnxruntime loads (probed with a one-node model)."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])], "probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    options = ort.SessionOptions()
    options.log_severity_level = 4
    for ir in range(onnx.IR_VERSION + 4, 3, -1):
        model.ir_version = ir
        try:
            ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001, S112 - ORT raises its own Fail type for "unsupported IR"
            continue
        return ir
    raise OnnxModelError("the installed onnxruntime loads no ONNX IR version at all (broken install?)")


def supported_ir_version() -> int:
    """IR version etdeploy writes: the highest both onnx's checker and onnxruntime accept."""
    import onnx

    return min(int(onnx.IR_VERSION), ort_max_ir_version())


def _check_external_location(location: str, base: Path, model_path: Path) -> Path:
    """Resolve one external-data ``location`` under ``base``; refuse anything that leaves it."""
    if not location:
        raise OnnxModelError("external data entry has an empty location", model_path)
    if "\x00" in location:
        raise OnnxModelError("external data location contains a NUL byte", model_path)
    posix, windows = PurePosixPath(location), PureWindowsPath(location)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or location.startswith(("/", "\\")):
        raise OnnxModelError(f"external data location {location!r} is an absolute path; only files "
                             "inside the model's folder are allowed", model_path)
    parts = [p for p in location.replace("\\", "/").split("/") if p not in ("", ".")]
    if ".." in parts:
        raise OnnxModelError(f"external data location {location!r} contains '..' (path traversal); only "
                             "files inside the model's folder are allowed", model_path)
    if not parts:
        raise OnnxModelError(f"external data location {location!r} names no file", model_path)
    current = base
    for part in parts:
        current = current / part
        if current.is_symlink():
            raise OnnxModelError(f"external data location {location!r} goes through a symlink "
                                 f"({current.name}); symlinks are refused", model_path)
    if not current.is_file():
        raise OnnxModelError(f"external data file {location!r} does not exist next to the model", model_path)
    resolved = current.resolve()
    if base.resolve() not in resolved.parents:
        raise OnnxModelError(f"external data location {location!r} resolves outside the model's folder",
                             model_path)
    return resolved


def check_external_data(model, model_path: Path, max_bytes: int = MAX_ONNX_BYTES) -> list[str]:
    """Validate every external-data reference of ``model`` (a ModelProto loaded without them).

    Returns the sorted list of referenced locations. Raises :class:`OnnxModelError` naming the first
    offending reference.
    """
    from onnx import TensorProto

    base = model_path.parent
    locations: set[str] = set()
    total = 0
    tensors = list(model.graph.initializer)
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                tensors.append(attr.t)
            tensors.extend(attr.tensors)
    for tensor in tensors:
        if tensor.data_location != TensorProto.EXTERNAL:
            continue
        info = {entry.key: entry.value for entry in tensor.external_data}
        location = info.get("location", "")
        resolved = _check_external_location(location, base, model_path)
        if location not in locations:
            total += resolved.stat().st_size
        locations.add(location)
    if total > max_bytes:
        raise OnnxModelError(f"external data totals {total} bytes, above the {max_bytes}-byte limit", model_path)
    return sorted(locations)


def load_onnx_checked(path: str | os.PathLike, *, max_bytes: int = MAX_ONNX_BYTES):
    """Load an ONNX file after the safety checks above; returns the ``onnx.ModelProto`` (with data).

    Raises :class:`OnnxModelError` (with ``path``) on any failure: missing, too large, not a
    protobuf, unsafe external data, IR version too new, checker failure.
    """
    import onnx
    from google.protobuf.message import DecodeError

    path = Path(path)
    if not path.exists():
        raise OnnxModelError("ONNX file does not exist", path)
    if not path.is_file():
        raise OnnxModelError("ONNX path is not a regular file", path)
    size = path.stat().st_size
    if size == 0:
        raise OnnxModelError("ONNX file is empty", path)
    if size > max_bytes:
        raise OnnxModelError(f"ONNX file has {size} bytes, above the {max_bytes}-byte limit", path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except (DecodeError, ValueError, RuntimeError, OSError) as exc:
        raise OnnxModelError(f"not a valid ONNX protobuf (truncated or not ONNX): {exc}", path) from exc
    if not model.graph.node:
        raise OnnxModelError("not a valid ONNX model: the graph has no nodes (truncated or not ONNX)", path)
    locations = check_external_data(model, path, max_bytes)
    _check_versions(model, path)
    _check_io_shapes(model, path, max_bytes)
    try:
        if locations:
            onnx.load_external_data_for_model(model, str(path.parent))
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:
        raise OnnxModelError(f"onnx.checker rejected the model: {first_line(exc)}", path) from exc
    except (onnx.shape_inference.InferenceError, ValueError, OSError, RuntimeError) as exc:
        raise OnnxModelError(f"ONNX model failed checking: {first_line(exc)}", path) from exc
    return model


def _check_versions(model, path: Path) -> None:
    import onnx

    ir = int(model.ir_version)
    limit = ort_max_ir_version()
    if ir < 3:
        raise OnnxModelError(f"ONNX IR version {ir} is too old (or the file is not ONNX)", path)
    if ir > limit:
        raise OnnxModelError(f"ONNX IR version {ir} is newer than the installed onnxruntime accepts "
                             f"(max {limit}); re-export with ir_version <= {limit}", path)
    if ir > onnx.IR_VERSION:
        raise OnnxModelError(f"ONNX IR version {ir} is newer than the installed onnx package knows "
                             f"({onnx.IR_VERSION})", path)
    default = [op.version for op in model.opset_import if op.domain in ("", "ai.onnx")]
    if not default:
        raise OnnxModelError("model imports no default-domain opset", path)


def _check_io_shapes(model, path: Path, max_bytes: int) -> None:
    """Refuse graph inputs/outputs whose declared static size is absurd (negative, or one tensor above
    ``max_bytes`` with symbolic dimensions counted as 1): consumers allocate buffers from these shapes."""
    from onnx import helper

    for kind, values in (("input", model.graph.input), ("output", model.graph.output)):
        for value in values:
            if not value.type.HasField("tensor_type"):
                continue
            tensor_type = value.type.tensor_type
            dims = [d.dim_value for d in tensor_type.shape.dim if d.HasField("dim_value")]
            if any(d < 0 for d in dims):
                raise OnnxModelError(f"graph {kind} {value.name!r} declares a negative dimension {dims}", path)
            try:
                itemsize = helper.tensor_dtype_to_np_dtype(tensor_type.elem_type).itemsize
            except (KeyError, TypeError, ValueError):
                itemsize = 1  # unknown element type: onnx.checker reports it
            size = itemsize
            for d in dims:
                size *= d
            if size > max_bytes:
                raise OnnxModelError(f"graph {kind} {value.name!r} declares shape {dims}: {size} bytes, above the "
                                     f"{max_bytes}-byte limit", path)


def first_line(exc: BaseException) -> str:
    """First line of an exception's text (ORT and onnx messages carry long stack dumps)."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


_PROBE = (
    "import sys, onnxruntime as ort\n"
    "o = ort.SessionOptions(); o.intra_op_num_threads = 1; o.inter_op_num_threads = 1\n"
    "o.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL\n"
    "ort.InferenceSession(sys.argv[1], o, providers=['CPUExecutionProvider'])\n"
)


def probe_ort_load_in_subprocess(path: str | os.PathLike, *, timeout_s: float = 120.0) -> None:
    """Check ``path`` (see :func:`load_onnx_checked`), then load it in ORT in a child process.

    A segfault, abort or hang in ONNX Runtime on a hostile file then only kills the child; it is
    reported as :class:`OnnxModelError`.
    """
    path = Path(path)
    load_onnx_checked(path)
    try:
        done = subprocess.run([sys.executable, "-c", _PROBE, str(path)], capture_output=True, text=True,
                              timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired as exc:
        raise OnnxModelError(f"onnxruntime did not load the model within {timeout_s:g} s", path) from exc
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
        raise OnnxModelError(f"onnxruntime failed to load the model in a child process: {tail}", path)
