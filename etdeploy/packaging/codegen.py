"""C99 source of an ONNX model from ``emx-onnx-cgen`` (PyPI; docs/method.md §10), made heap-free.

The generator (the ``package`` extra) turns a checked ONNX graph into plain C99: one function per
node, one entry point ``void etd_model(const float input[restrict 1][C][H][W], float output[restrict
1][K])``. etdeploy calls it with

- the batch axis pinned to 1 (:func:`pin_batch`): the generated code has static shapes only;
- ``large_weight_threshold=0``: every weight is a ``const`` array in ``etd_model_data.c`` (ROM on a
  microcontroller, ``.rodata`` elsewhere); the generator's other mode, a binary blob read by
  ``etd_model_load(path)``, needs a file system and is not used, so ``etd_model_load`` is a no-op;
- ``large_temp_threshold_bytes=0``: no ``malloc``; the generator then puts every intermediate tensor
  on the stack of ``etd_model``, which :func:`static_activations` rewrites to function-local
  ``static`` arrays (``.bss``): the stack stays small and the activation RAM is visible to the
  linker. Consequence: ``etd_model`` is not re-entrant (one call at a time per program image).

An operator the generator has no lowering for is refused before anything is generated
(:func:`unsupported_ops`), naming the op; any other generator failure is an
:class:`~etdeploy.errors.ExportError` naming the model.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from etdeploy.errors import ExportError, UnsupportedOpError

#: Name of the generated entry point (and the prefix of its files).
ENTRY = "etd_model"
GENERATOR = "emx-onnx-cgen"
_TEMP_DECLARATION = re.compile(r"^(    )((?:float|double|int8_t|uint8_t|int16_t|uint16_t|int32_t|uint32_t|int64_t|"
                               r"uint64_t|_Bool) tmp\d+_\w*(?:\[\d+\])+;)$", re.MULTILINE)
_ENTRY_SIGNATURE = re.compile(rf"^void {ENTRY}\((.*)\) \{{$", re.MULTILINE)


@dataclass(frozen=True)
class GeneratedC:
    """The generated sources (``model``: graph and entry point; ``data``: the const weight arrays),
    the entry point's prototype, the generator's version and the number of activation buffers made static."""

    model: str
    data: str
    prototype: str
    generator_version: str
    static_buffers: int


def generator_version() -> str:
    """The installed emx-onnx-cgen version (an :class:`ExportError` naming the extra when missing)."""
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(GENERATOR)
    except PackageNotFoundError as exc:
        raise ExportError(f"the C generator {GENERATOR} is not installed: pip install 'etdeploy[package]'") from exc


def generator_ops() -> frozenset[str]:
    """ONNX op types (default domain) the generator can lower."""
    generator_version()
    from emx_onnx_cgen.lowering import load_lowering_registry
    from emx_onnx_cgen.lowering.registry import get_lowering_registry

    load_lowering_registry()
    names = set()
    for key in get_lowering_registry():
        names.add(key if isinstance(key, str) else key[0])
    return frozenset(names | {"Constant"})  # Constant nodes become const arrays at import


def unsupported_ops(model: Any) -> tuple[str, ...]:
    """Op types of ``model`` (sorted; ``domain::Op`` outside the default domain) the generator cannot emit."""
    known = generator_ops()
    bad = set()
    for node in model.graph.node:
        if node.domain not in ("", "ai.onnx"):
            bad.add(f"{node.domain}::{node.op_type}")
        elif node.op_type not in known:
            bad.add(node.op_type)
    return tuple(sorted(bad))


def check_generator_ops(model: Any, path: Any = None) -> None:
    """Raise :class:`UnsupportedOpError` naming every op of ``model`` the generator cannot emit."""
    bad = unsupported_ops(model)
    if bad:
        raise UnsupportedOpError(f"the C generator ({GENERATOR}) cannot emit op(s) {', '.join(bad)}; no bundle "
                                 "written", path)


def pin_batch(model: Any) -> Any:
    """A copy of ``model`` whose dynamic leading (batch) axis of every data input is 1 (the generator's own
    ``--input-dim NAME:0=1``, which also drops the stale dynamic shapes of intermediate tensors)."""
    import onnx
    from emx_onnx_cgen.input_dim_overrides import apply_input_dim_overrides, parse_input_dim_overrides

    from etdeploy.onnx_graph import data_inputs

    pinned = onnx.ModelProto()
    pinned.CopyFrom(model)
    specs = [f"{v.name}:0=1" for v in data_inputs(pinned)
             if v.type.tensor_type.shape.dim and not v.type.tensor_type.shape.dim[0].HasField("dim_value")]
    if specs:
        apply_input_dim_overrides(pinned, parse_input_dim_overrides(specs))
    return pinned


def static_activations(source: str) -> tuple[str, int]:
    """``source`` with the entry point's stack temporaries declared ``static``; and how many there were.

    Only declarations inside ``etd_model``'s body are touched (the generator emits them first,
    indented by four spaces, one per line).
    """
    match = _ENTRY_SIGNATURE.search(source)
    if match is None:
        raise ExportError(f"generated C has no entry point {ENTRY}(...): generator output changed?")
    head, body = source[:match.end()], source[match.end():]
    body, count = _TEMP_DECLARATION.subn(r"\1static \2", body)
    return head + body, count


def generate_c(model: Any, path: Any = None) -> GeneratedC:
    """C99 sources of the checked ONNX ``model`` (see the module docstring); ``path`` names it in errors."""
    version = generator_version()
    check_generator_ops(model, path)
    from emx_onnx_cgen.compiler import Compiler, CompilerOptions
    from emx_onnx_cgen.errors import CompilerError

    options = CompilerOptions(model_name=ENTRY, large_temp_threshold_bytes=0, large_weight_threshold=0)
    try:
        source, data = Compiler(options).compile_with_data_file(pin_batch(model))
    except CompilerError as exc:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "Unsupported op" in message:
            raise UnsupportedOpError(f"the C generator ({GENERATOR}) cannot emit this model: {message}; no bundle "
                                     "written", path) from exc
        raise ExportError(f"the C generator ({GENERATOR}) failed: {message}", path) from exc
    if "malloc(" in source or "fopen(" in source:
        raise ExportError(f"the C generator ({GENERATOR}) emitted heap or file I/O despite the settings", path)
    source, count = static_activations(source)
    prototype = f"void {ENTRY}({_ENTRY_SIGNATURE.search(source).group(1)});"
    return GeneratedC(model=source, data=data, prototype=prototype, generator_version=version,
                      static_buffers=count)
