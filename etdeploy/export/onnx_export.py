"""Model -> ONNX -> checker -> onnxsim, with a manifest (``export.json``, :class:`~etdeploy.export.ExportRun`).

Graph contract of every exported file: one input ``input`` (float32, normalised image, NCHW,
dynamic batch axis ``batch``), one output ``logits`` (float32, ``(batch, num_classes)``).

Masks: a model carrying :class:`~etdeploy.models.NeuronMask` modules would export each mask as a
``Mul`` by a constant 0/1 vector, which keeps the full dense widths (no memory saved) and hides the
pruning inside a constant. The default policy (``refuse``) therefore refuses such a model and asks
for slicing first; ``keep`` exports them deliberately as ``Mul`` nodes (useful to check a masked
model in ONNX Runtime), and ``drop`` removes them, allowed only when every mask is all ones (then
dropping them changes nothing). The policies are :data:`etdeploy.vocab.EXPORT_MASK_MODES`.

LocalResponseNorm: torch's functional LRN traces into ~20 primitive nodes (Pow, Pad, AveragePool,
Reshape...); during export each ``nn.LocalResponseNorm`` is wrapped so that it emits the single ONNX
``LRN`` op with the same ``size``, ``alpha``, ``beta`` and ``bias = k`` (identical definition:
``x / (k + alpha/size * sum_{window} x^2)^beta``; the torch forward is unchanged).

Adaptive average pooling (torchvision's ``avgpool``): where the pooled input divides evenly into the
output (``(12, 12) -> (6, 6)``, or global pooling to 1) torch exports ``AveragePool`` /
``GlobalAveragePool``. Otherwise (AlexNet's ``(6, 6)`` pool after a 3x3 map at 128 px, VGG's
``(7, 7)`` after 2x2) the legacy exporter has no op for it; since the model's input size is fixed,
each such pool is exported as the linear map it is: ``Y = A_h X A_w^T`` with constant ``A_h``
``(out_h, in_h)``, ``A_h[i, j] = 1 / |window_i|`` for ``j`` in window ``i = [floor(i*in/out),
ceil((i+1)*in/out))`` (the definition torch uses), i.e. two ``MatMul`` nodes.

The user's interface (docs/method.md §5): a model imported from ONNX carries ``meta["interface"]``
(:mod:`etdeploy.export.interface`); its export is then called like the original: the original's input
name, layout (NHWC through a leading ``Transpose``) and input affine (``Mul``/``Add`` re-applied after
the transpose), the original's output name and kind (``Softmax``/``LogSoftmax`` appended), float32.
``export.json`` records it (``interface``, and the ``input``/``output`` entries describe that graph).
A model without an interface exports exactly as above.

Determinism: export uses the legacy TorchScript exporter (``dynamo=False``) on a deep copy in eval
mode, a fixed opset and IR version, no timestamps; the same model gives byte-identical files
(tested).
"""

from __future__ import annotations

import copy
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from etdeploy.errors import ExportError
from etdeploy.export.interface import Interface, deployable_module, interface_of
from etdeploy.export.manifest import (
    EXPORT_FORMAT,
    EXPORT_FORMAT_VERSION,
    MANIFEST_FILE,
    ONNX_FILE,
    SIM_FILE,
    ExportedModel,
    ExportRun,
    OnnxFileInfo,
    SimplificationCheck,
)
from etdeploy.fileio import refuse_existing_output
from etdeploy.vocab import EXPORT_MASK_MODES, choices_text

INPUT_NAME = "input"
OUTPUT_NAME = "logits"


def _check_masks_policy(masks: str) -> None:
    if masks not in EXPORT_MASK_MODES:
        raise ExportError(f"masks policy must be {choices_text(EXPORT_MASK_MODES)}, got {masks!r}")


@dataclass(frozen=True)
class ExportConfig:
    """How to export. ``check_tol``: max |delta| allowed between the exported and simplified graphs
    on ``check_batch`` seeded random inputs (ORT, optimisations off)."""

    opset: int = 17
    masks: str = "refuse"
    check_tol: float = 1e-5
    check_batch: int = 2
    seed: int = 0

    def __post_init__(self) -> None:
        if self.opset < 17:
            raise ExportError(f"opset must be >= 17, got {self.opset}")
        _check_masks_policy(self.masks)
        if not self.check_tol > 0:
            raise ExportError(f"check_tol must be > 0, got {self.check_tol}")
        if self.check_batch < 1:
            raise ExportError(f"check_batch must be >= 1, got {self.check_batch}")


@dataclass(frozen=True)
class ExportResult:
    """Where :func:`export_model` wrote the export, and its manifest (``run``, also as a dict)."""

    out_dir: Path
    onnx_path: Path
    sim_path: Path
    run: ExportRun = field(repr=False)

    @property
    def manifest(self) -> dict[str, Any]:
        """``export.json`` as written."""
        return self.run.to_dict()


def _lrn_module(module):
    """Wrap ``nn.LocalResponseNorm`` so the legacy exporter emits one ONNX ``LRN`` node."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    class LRNFunction(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, size, alpha, beta, k):
            return F.local_response_norm(x, size, alpha, beta, k)

        @staticmethod
        def symbolic(g, x, size, alpha, beta, k):
            return g.op("LRN", x, size_i=int(size), alpha_f=float(alpha), beta_f=float(beta), bias_f=float(k))

    class ExportLRN(nn.Module):
        """``(batch, C, H, W) -> (batch, C, H, W)``: same maths as ``module``; exports as ONNX LRN."""

        def __init__(self, inner: nn.LocalResponseNorm):
            super().__init__()
            self.size, self.alpha, self.beta, self.k = inner.size, inner.alpha, inner.beta, inner.k

        def forward(self, x):
            return LRNFunction.apply(x, self.size, self.alpha, self.beta, self.k)

    return ExportLRN(module)


def _pool_matrix(n_in: int, n_out: int):
    """``(n_out, n_in)`` averaging matrix of adaptive pooling along one axis (torch's windows)."""
    import torch

    a = torch.zeros(n_out, n_in, dtype=torch.float32)
    for i in range(n_out):
        start = (i * n_in) // n_out
        end = -((-(i + 1) * n_in) // n_out)
        a[i, start:end] = 1.0 / (end - start)
    return a


def _fixed_adaptive_pool(in_hw: tuple[int, int], out_hw: tuple[int, int]):
    """``nn.AdaptiveAvgPool2d(out_hw)`` for a fixed ``in_hw`` input as ``A_h @ x @ A_w^T`` (two MatMuls)."""
    from torch import nn

    class FixedAdaptiveAvgPool(nn.Module):
        """``(batch, C, in_h, in_w) -> (batch, C, out_h, out_w)``: adaptive average pooling, fixed input size."""

        def __init__(self):
            super().__init__()
            self.register_buffer("rows", _pool_matrix(in_hw[0], out_hw[0]))
            self.register_buffer("cols", _pool_matrix(in_hw[1], out_hw[1]).t().contiguous())

        def forward(self, x):
            return (self.rows @ x) @ self.cols

    return FixedAdaptiveAvgPool()


def _replace_modules(model, replacements: dict[str, object]) -> None:
    for name, new in replacements.items():
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)


def exportable_pools(model, input_size: int):
    """``model``, or a deep copy whose adaptive average pools that do not divide their input evenly
    are replaced by their fixed linear map (see the module doc). Pools are sized on a zero input."""
    import torch
    from torch import nn

    pools = {name: m for name, m in model.named_modules() if isinstance(m, nn.AdaptiveAvgPool2d)}
    if not pools:
        return model
    seen: dict[str, tuple[int, int]] = {}

    def record(name):
        return lambda module, inputs, output: seen.__setitem__(name, tuple(inputs[0].shape[-2:]))

    hooks = [m.register_forward_hook(record(name)) for name, m in pools.items()]
    was = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, int(input_size), int(input_size)))
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExportError(f"the model does not run on {input_size}x{input_size} inputs: {first}") from exc
    finally:
        model.train(was)
        for hook in hooks:
            hook.remove()
    replace = {}
    for name, in_hw in seen.items():
        out = pools[name].output_size
        sides = (out, out) if isinstance(out, int) else tuple(out)
        out_hw = tuple(in_hw[k] if v is None else int(v) for k, v in enumerate(sides))
        if in_hw[0] % out_hw[0] or in_hw[1] % out_hw[1]:
            replace[name] = (tuple(int(v) for v in in_hw), out_hw)
    if not replace:
        return model
    work = copy.deepcopy(model)
    _replace_modules(work, {name: _fixed_adaptive_pool(*sizes) for name, sizes in replace.items()})
    return work


def prepare_for_export(model, masks: str = "refuse"):
    """Deep copy in eval mode with the mask policy applied. ``model`` is not changed."""
    from etdeploy.models import has_masks, without_masks
    from etdeploy.models import masks as model_masks

    _check_masks_policy(masks)
    work = copy.deepcopy(model).eval()
    if has_masks(work):
        if masks == "refuse":
            pruned = {name: m.width - len(m.kept) for name, m in model_masks(work).items()}
            raise ExportError(
                "the model still carries its pruning masks (masked neurons: "
                + ", ".join(f"{k}={v}" for k, v in pruned.items())
                + "); slice it first so the ONNX graph has the smaller dense layers (export the sliced/ "
                "folder that prune writes), or choose the masks policy keep (exports a Mul by a constant "
                "0/1 vector) or drop (all-ones masks only)"
            )
        empty = [name for name, m in model_masks(work).items() if not m.kept]
        if empty:
            raise ExportError(f"every neuron of layer(s) {', '.join(empty)} is masked: the output would not depend "
                              "on the input")
        if masks == "drop":
            not_ones = [name for name, m in model_masks(work).items() if len(m.kept) != m.width]
            if not_ones:
                raise ExportError(f"the masks policy drop needs all-ones masks; layer(s) {', '.join(not_ones)} "
                                  "have masked neurons")
            without_masks(work)
    from torch import nn

    _replace_modules(work, {name: _lrn_module(m) for name, m in work.named_modules()
                            if isinstance(m, nn.LocalResponseNorm)})
    for p in work.parameters():
        p.requires_grad_(False)
    return work


_PLACEHOLDERS = ("etdeploy.input", "etdeploy.output")


def _rename_tensor(graph, old: str, new: str) -> None:
    """Rename the tensor ``old`` to ``new`` everywhere in ``graph`` (no-op when absent)."""
    for node in graph.node:
        node.input[:] = [new if n == old else n for n in node.input]
        node.output[:] = [new if n == old else n for n in node.output]
    for value in [*graph.input, *graph.output, *graph.value_info, *graph.initializer]:
        if value.name == old:
            value.name = new


def _io_names(interface: Interface | None) -> tuple[str, str]:
    return (INPUT_NAME, OUTPUT_NAME) if interface is None else (interface.input_name, interface.output_name)


def _input_shape(interface: Interface | None, input_size: int, batch: int) -> tuple[int, int, int, int]:
    """The graph's input shape: NCHW, or NHWC for an interface that says so."""
    if interface is not None and interface.layout == "NHWC":
        return batch, input_size, input_size, 3
    return batch, 3, input_size, input_size


def export_onnx_bytes(model, input_size: int, *, opset: int = 17, interface: Interface | None = None) -> bytes:
    """Export ``model`` ``(batch, 3, S, S) -> (batch, K)`` to ONNX bytes; checked with full_check.

    With ``interface`` the graph is called like the original model (module doc). The IR version is
    lowered to the highest the installed onnxruntime and onnx both accept.
    """
    import warnings

    import onnx
    import torch

    from etdeploy.onnx_safety import supported_ir_version

    model = exportable_pools(model, input_size)
    if interface is not None:
        model = deployable_module(model, interface)
    dummy = torch.zeros(_input_shape(interface, int(input_size), 1), dtype=torch.float32)
    # the exporter refuses some names (Keras's numeric output names): the interface's are set afterwards
    in_name, out_name = (INPUT_NAME, OUTPUT_NAME) if interface is None else _PLACEHOLDERS
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model, (dummy,), buffer, input_names=[in_name], output_names=[out_name],
                              dynamic_axes={in_name: {0: "batch"}, out_name: {0: "batch"}},
                              opset_version=int(opset), do_constant_folding=True, dynamo=False)
    except Exception as exc:
        raise ExportError(f"torch.onnx.export failed: {type(exc).__name__}: {exc}") from exc
    proto = onnx.load_from_string(buffer.getvalue())
    proto.ir_version = min(int(proto.ir_version), supported_ir_version())
    if interface is not None:
        for placeholder, name in zip(_PLACEHOLDERS, _io_names(interface)):
            _rename_tensor(proto.graph, name, f"{name}.etdeploy")  # an internal tensor of that name steps aside
            _rename_tensor(proto.graph, placeholder, name)
    _check_proto(proto, "exported", interface)
    return proto.SerializeToString()


def _check_proto(proto, what: str, interface: Interface | None = None) -> None:
    import onnx

    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"onnx.checker rejected the {what} model: {exc}") from exc
    from etdeploy.onnx_graph import data_inputs

    in_name, out_name = _io_names(interface)
    names_in = [v.name for v in data_inputs(proto)]
    names_out = [v.name for v in proto.graph.output]
    if names_in != [in_name] or names_out != [out_name]:
        raise ExportError(f"{what} model has inputs {names_in} and outputs {names_out}; "
                          f"expected [{in_name!r}] and [{out_name!r}]")


def simplify_onnx_bytes(data: bytes, *, interface: Interface | None = None) -> bytes:
    """Run onnxsim (no internal random check: :func:`compare_onnx_outputs` does a seeded one)."""
    import onnx
    import onnxsim

    proto = onnx.load_from_string(data)
    try:
        simplified, ok = onnxsim.simplify(proto, check_n=0)
    except Exception as exc:
        raise ExportError(f"onnxsim failed: {type(exc).__name__}: {exc}") from exc
    if not ok:
        raise ExportError("onnxsim reported that the simplified model is not valid")
    simplified.ir_version = int(proto.ir_version)
    _check_proto(simplified, "simplified", interface)
    return simplified.SerializeToString()


def compare_onnx_outputs(a: bytes, b: bytes, input_size: int, *, batch: int = 2, seed: int = 0,
                         interface: Interface | None = None) -> float:
    """Max |output_a - output_b| on ``batch`` seeded N(0,1) inputs ``(batch, 3, S, S)`` (or NHWC with an
    ``interface``); ORT, no optimisations. The outputs are logits, or the interface's output kind."""
    import numpy as np
    import onnx

    from etdeploy.ort_session import make_session

    x = np.random.default_rng(seed).standard_normal(_input_shape(interface, input_size, batch)).astype(np.float32)
    in_name, out_name = _io_names(interface)
    ya = make_session(onnx.load_from_string(a)).run([out_name], {in_name: x})[0]
    yb = make_session(onnx.load_from_string(b)).run([out_name], {in_name: x})[0]
    if ya.shape != yb.shape:
        raise ExportError(f"simplified model outputs shape {yb.shape}, original {ya.shape}")
    return float(np.max(np.abs(ya.astype(np.float64) - yb.astype(np.float64))))


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import onnxsim
    import torch

    return {"torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
            "onnxsim": str(onnxsim.__version__)}


def _io_spec(spec, interface: Interface | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``input`` and ``output`` entries of ``export.json``: the graph's I/O contract."""
    size = spec.input_size
    if interface is None:
        return ({"name": INPUT_NAME, "dtype": "float32", "layout": "NCHW", "shape": ["batch", 3, size, size],
                 "preprocessing": "x = (uint8_rgb / 255 - mean) / std, per channel"},
                {"name": OUTPUT_NAME, "dtype": "float32", "shape": ["batch", spec.num_classes]})
    mean, std = interface.normalisation(spec.mean, spec.std)
    return ({"name": interface.input_name, "dtype": "float32", "layout": interface.layout,
             "shape": interface.input_shape(size),
             "preprocessing": "x = (uint8_rgb / 255 - mean) / std, per channel, as the original model's input",
             "mean": list(mean), "std": list(std)},
            {"name": interface.output_name, "dtype": "float32", "shape": ["batch", spec.num_classes],
             "kind": interface.output})


def export_model(model, out_dir: str | os.PathLike, *, config: ExportConfig | None = None,
                 force: bool = False) -> ExportResult:
    """Export ``model`` (an ETModel with ``.spec``) to ``out_dir``: model.onnx, model.sim.onnx, export.json.

    The folder is written atomically (nothing appears unless all three files are complete) and an
    existing non-empty ``out_dir`` is refused unless ``force``.
    """
    import onnx

    from etdeploy.export.summary import onnx_summary
    from etdeploy.fileio import StagedDir, atomic_write_bytes, atomic_write_json, sha256_bytes
    from etdeploy.models import count_parameters, weights_fingerprint

    config = config or ExportConfig()
    spec = getattr(model, "spec", None)
    if spec is None:
        raise ExportError("model has no spec (input size, normalisation); load it with etdeploy.models.load_model")
    out_dir = Path(out_dir)
    refuse_existing_output(out_dir, force=force)
    interface = interface_of(spec)
    work = prepare_for_export(model, config.masks)
    raw = export_onnx_bytes(work, spec.input_size, opset=config.opset, interface=interface)
    sim = simplify_onnx_bytes(raw, interface=interface)
    delta = compare_onnx_outputs(raw, sim, spec.input_size, batch=config.check_batch, seed=config.seed,
                                 interface=interface)
    if not delta <= config.check_tol:
        raise ExportError(f"simplified model differs from the exported one by {delta:.3g} "
                          f"(> tolerance {config.check_tol:g}) on seeded random inputs")
    files = {}
    for name, data in ((ONNX_FILE, raw), (SIM_FILE, sim)):
        summary = onnx_summary(onnx.load_from_string(data))
        files[name] = OnnxFileInfo.from_dict({**summary, "bytes": len(data), "sha256": sha256_bytes(data)})
    from etdeploy.models import has_masks

    io_spec = _io_spec(spec, interface)
    run = ExportRun(
        model=ExportedModel(
            arch=spec.arch, num_classes=spec.num_classes, class_names=tuple(spec.class_names),
            input_size=spec.input_size, mean=tuple(spec.mean), std=tuple(spec.std),
            torch_parameters=count_parameters(model), weights_fingerprint=weights_fingerprint(model),
            masks_policy=config.masks, had_masks=has_masks(model)),
        input=io_spec[0],
        output=io_spec[1],
        opset=config.opset,
        files=files,
        simplification_check=SimplificationCheck(
            max_abs_logit_delta=delta, tolerance=config.check_tol, batch=config.check_batch, seed=config.seed,
            inputs="standard normal, numpy default_rng(seed)", runtime="onnxruntime CPU, ORT_DISABLE_ALL, 1 thread"),
        versions=_versions(),
        format=EXPORT_FORMAT, format_version=EXPORT_FORMAT_VERSION,
        interface=interface,
    )
    with StagedDir(out_dir, force=force) as tmp:
        atomic_write_bytes(tmp / ONNX_FILE, raw)
        atomic_write_bytes(tmp / SIM_FILE, sim)
        atomic_write_json(tmp / MANIFEST_FILE, run.to_dict())
    return ExportResult(out_dir, out_dir / ONNX_FILE, out_dir / SIM_FILE, run)


def export_dir(model_dir: str | os.PathLike, out: str | os.PathLike, config: ExportConfig | None = None, *,
               force: bool = False) -> ExportRun:
    """Use case of ``etdeploy export`` and the pipeline's export stage: load the saved model in
    ``model_dir`` and :func:`export_model` it into the new folder ``out``; returns its ``export.json``."""
    from etdeploy.models import load_model

    return export_model(load_model(model_dir), out, config=config, force=force).run
