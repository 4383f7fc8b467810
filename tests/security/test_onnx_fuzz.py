"""Seeded fuzzing of ONNX protobufs: every mutant gives a typed etdeploy error or a model that works.

The seed model is a small sequential CNN exported by etdeploy itself (no binary blobs of unknown
origin). Each case applies one mutator (byte-level: bit flips, truncation, insertion, splicing;
structured: delete a node, rename an input, wrong dtypes, bad or extra attributes, dangling edge,
huge dims, unknown op, shuffled nodes, short tensor data, bad opset / IR version...). A case passes
when it either raises an :class:`~etdeploy.errors.EtdeployError` subclass, or loads through
:func:`etdeploy.onnx_safety.load_onnx_checked`, is sized by :func:`etdeploy.targets.fit_analysis`
and runs in ONNX Runtime (:func:`etdeploy.ort_session.make_session`) on the input etdeploy would
feed. Any other exception is a leak; the cases run in a child process so a crash inside ONNX
Runtime's C++ is reported (with the case that caused it) instead of killing the test run.
"""

from __future__ import annotations

import copy
import json
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
N_CASES = 400
SEED = 20261125
INPUT_SIZE = 8
NUM_CLASSES = 3


# --------------------------------------------------------------------------- mutators
def _bitflip(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        b[rng.randrange(len(b))] ^= 1 << rng.randrange(8)
    return bytes(b)


def _truncate(data: bytes, rng: random.Random) -> bytes:
    return data[: rng.randrange(1, len(data))]


def _insert(data: bytes, rng: random.Random) -> bytes:
    i = rng.randrange(len(data))
    return data[:i] + bytes(rng.randrange(256) for _ in range(rng.randint(1, 16))) + data[i:]


def _splice(data: bytes, rng: random.Random) -> bytes:
    i, j = sorted(rng.sample(range(len(data)), 2))
    k = rng.randrange(len(data))
    return data[:k] + data[i:j] + data[k:]


BYTE_MUTATORS = {"bitflip": _bitflip, "truncate": _truncate, "insert": _insert, "splice": _splice}


def _delete_node(p, rng):
    del p.graph.node[rng.randrange(len(p.graph.node))]


def _rename_input(p, rng):
    p.graph.input[0].name = rng.choice(["renamed", "", "features.0.weight", "input "])


def _input_dtype(p, rng):
    from onnx import TensorProto

    p.graph.input[0].type.tensor_type.elem_type = rng.choice(
        [TensorProto.INT64, TensorProto.STRING, TensorProto.DOUBLE, TensorProto.UINT8, TensorProto.FLOAT16, 0, 99])


def _initializer_dtype(p, rng):
    from onnx import TensorProto

    rng.choice(list(p.graph.initializer)).data_type = rng.choice(
        [TensorProto.INT64, TensorProto.DOUBLE, TensorProto.STRING, TensorProto.UINT8, 0, 77])


def _bad_attribute(p, rng):
    import onnx

    node = rng.choice([n for n in p.graph.node if n.attribute])
    attr = rng.choice(list(node.attribute))
    if attr.type == onnx.AttributeProto.INTS:
        attr.ints[:] = [rng.choice([-5, 0, 1, 10**9]) for _ in attr.ints] or [0]
    elif attr.type == onnx.AttributeProto.INT:
        attr.i = rng.choice([-5, 0, 2, 10**12])
    elif attr.type == onnx.AttributeProto.FLOAT:
        attr.f = rng.choice([float("nan"), float("inf"), -1.0])
    else:
        attr.type = onnx.AttributeProto.STRING
        attr.s = b"x"


def _extra_attribute(p, rng):
    from onnx import helper

    node = rng.choice(list(p.graph.node))
    node.attribute.append(helper.make_attribute(rng.choice(["bogus", "axis", "kernel_shape", "group"]),
                                                rng.choice([3, [1, 2], "s", 0.5, -1])))


def _dangling_edge(p, rng):
    node = rng.choice(list(p.graph.node))
    node.input[rng.randrange(len(node.input))] = rng.choice(["dangling", "nowhere/0", "logits"])  # "" = optional


def _huge_dims(p, rng):
    value = rng.choice([p.graph.input[0], p.graph.output[0]])
    dims = value.type.tensor_type.shape.dim
    dims[rng.randrange(len(dims))].dim_value = rng.choice([2**31, 2**40, 2**62, 0, 1, 7])


def _huge_initializer(p, rng):
    tensor = rng.choice(list(p.graph.initializer))
    tensor.dims[rng.randrange(len(tensor.dims))] = rng.choice([2**31, 2**40, 2**62, 0, 10**6])


def _unknown_op(p, rng):
    node = rng.choice(list(p.graph.node))
    node.op_type = rng.choice(["NoSuchOp", "Loop", "If", "Gemm", "Conv", "", "Relu", "Sigmoid", "Identity"])


def _shuffle_nodes(p, rng):
    nodes = list(p.graph.node)
    rng.shuffle(nodes)
    del p.graph.node[:]
    p.graph.node.extend(nodes)


def _short_tensor_data(p, rng):
    tensor = rng.choice(list(p.graph.initializer))
    tensor.raw_data = tensor.raw_data[: rng.randrange(len(tensor.raw_data))]


def _bad_opset(p, rng):
    from onnx import helper

    del p.opset_import[:]
    p.opset_import.append(helper.make_opsetid(rng.choice(["", "com.example"]), rng.choice([1, 5, 99, 10**6])))


def _bad_ir_version(p, rng):
    p.ir_version = rng.choice([0, 1, 2, 99, 2**40])


def _bad_output(p, rng):
    p.graph.output[0].name = rng.choice(["input", "nowhere", "", "/features/features.1/Relu_output_0"])


def _duplicate_output(p, rng):
    node = rng.choice(list(p.graph.node))
    node.output[0] = rng.choice(["input", "features.0.weight", p.graph.node[0].output[0]])


def _drop_input_dim(p, rng):
    del p.graph.input[0].type.tensor_type.shape.dim[rng.randrange(4)]


STRUCT_MUTATORS = {
    "delete_node": _delete_node, "rename_input": _rename_input, "input_dtype": _input_dtype,
    "initializer_dtype": _initializer_dtype, "bad_attribute": _bad_attribute, "extra_attribute": _extra_attribute,
    "dangling_edge": _dangling_edge, "huge_dims": _huge_dims, "huge_initializer": _huge_initializer,
    "unknown_op": _unknown_op, "shuffle_nodes": _shuffle_nodes, "short_tensor_data": _short_tensor_data,
    "bad_opset": _bad_opset, "bad_ir_version": _bad_ir_version, "bad_output": _bad_output,
    "duplicate_output": _duplicate_output, "drop_input_dim": _drop_input_dim,
}
MUTATORS = sorted(BYTE_MUTATORS) + sorted(STRUCT_MUTATORS)


def mutate(data: bytes, name: str, seed: int) -> bytes:
    """One seeded mutant of the serialised model ``data``."""
    import onnx

    rng = random.Random(seed)
    if name in BYTE_MUTATORS:
        return BYTE_MUTATORS[name](data, rng)
    proto = copy.deepcopy(onnx.load_from_string(data))
    STRUCT_MUTATORS[name](proto, rng)
    return proto.SerializeToString()


def seed_model_bytes() -> bytes:
    from etdeploy.export import export_onnx_bytes
    from etdeploy.models import build_model

    model = build_model("sequential-cnn", NUM_CLASSES, input_size=INPUT_SIZE, layers="c4k3p1-r-m2", hidden=(8,))
    return export_onnx_bytes(model.eval(), INPUT_SIZE)


# --------------------------------------------------------------------------- one case
def classify(path: Path, profile) -> dict:
    """Outcome of one file: ``ok`` (loads, sizes, runs), ``typed`` (an EtdeployError) or ``leak``."""
    from etdeploy.errors import EtdeployError
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session
    from etdeploy.targets import fit_analysis

    stage = "load"
    try:
        proto = load_onnx_checked(path)
        stage = "fit"
        fit_analysis(proto, profile)
        stage = "session"
        session = make_session(proto)
        stage = "run"
        x = np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)
        outputs = session.run(None, {"input": x})
        return {"outcome": "ok", "shapes": [list(np.shape(o)) for o in outputs]}
    except EtdeployError as exc:
        return {"outcome": "typed", "stage": stage, "error": type(exc).__name__, "path": exc.path,
                "one_line": "\n" not in exc.one_line()}
    except Exception as exc:  # noqa: BLE001 - this is what the test is looking for
        return {"outcome": "leak", "stage": stage, "error": f"{type(exc).__name__}: {exc}"[:300]}


def _child_main(folder: str) -> None:
    """Classify every ``*.onnx`` in ``folder``; one ``start`` line before and one JSON line after each."""
    from etdeploy.targets import get_profile

    profile = get_profile("rad750")
    for path in sorted(Path(folder).glob("*.onnx")):
        print(f"start {path.name}", flush=True)
        print(json.dumps({"case": path.name, **classify(path, profile)}), flush=True)


# --------------------------------------------------------------------------- tests
@pytest.fixture(scope="module")
def seed_bytes() -> bytes:
    return seed_model_bytes()


def test_seed_model_loads_runs_and_matches_torch(seed_bytes, tmp_path):
    """The unmutated model is accepted (so every rejection below is caused by the mutation)."""
    import torch

    from etdeploy.models import build_model
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session

    path = tmp_path / "seed.onnx"
    path.write_bytes(seed_bytes)
    x = np.random.default_rng(0).standard_normal((2, 3, INPUT_SIZE, INPUT_SIZE)).astype(np.float32)
    y = make_session(load_onnx_checked(path)).run(None, {"input": x})[0]
    model = build_model("sequential-cnn", NUM_CLASSES, input_size=INPUT_SIZE, layers="c4k3p1-r-m2", hidden=(8,))
    with torch.no_grad():
        expected = model.eval()(torch.from_numpy(x)).numpy()
    assert y.shape == (2, NUM_CLASSES)
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_mutation_is_seeded(seed_bytes):
    for name in MUTATORS:
        assert mutate(seed_bytes, name, 7) == mutate(seed_bytes, name, 7)
    assert len({mutate(seed_bytes, "bitflip", s) for s in range(20)}) > 15


def test_fuzzed_onnx_gives_typed_errors_or_working_models(seed_bytes, tmp_path):
    cases = {}
    for i in range(N_CASES):
        name = MUTATORS[i % len(MUTATORS)]
        data = mutate(seed_bytes, name, SEED + i)
        file = f"case{i:04d}-{name}.onnx"
        cases[file] = name
        (tmp_path / file).write_bytes(data)
    code = f"from tests.security.test_onnx_fuzz import _child_main; _child_main({str(tmp_path)!r})"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          check=False)
    lines = done.stdout.splitlines()
    started = [line.split(" ", 1)[1] for line in lines if line.startswith("start ")]
    assert done.returncode == 0, (f"child died with status {done.returncode} on {started[-1:]}: "
                                  f"{done.stderr[-2000:]}")
    results = [json.loads(line) for line in lines if line.startswith("{")]
    assert sorted(r["case"] for r in results) == sorted(cases)

    leaks = [r for r in results if r["outcome"] == "leak"]
    assert leaks == []
    typed = [r for r in results if r["outcome"] == "typed"]
    ok = [r for r in results if r["outcome"] == "ok"]
    assert len(typed) + len(ok) == N_CASES
    # every typed error names the offending file (load stage) and is one line
    assert all(r["one_line"] for r in typed)
    assert all(r["path"] == str(tmp_path / r["case"]) for r in typed if r["stage"] == "load")
    # accepted mutants still compute (batch 1, K logits) - e.g. bit flips inside weight values
    assert all(r["shapes"][0][0] == 1 for r in ok)
    # the mutations do bite: most cases are rejected, by every kind of check
    assert len(typed) > 0.75 * N_CASES
    stages = Counter(r["stage"] for r in typed)
    assert stages["load"] > 0.7 * N_CASES and stages["session"] + stages["run"] > 0
    by_mutator = Counter(cases[r["case"]] for r in typed)
    never_benign = {"truncate", "delete_node", "rename_input", "input_dtype", "initializer_dtype", "dangling_edge",
                    "shuffle_nodes", "short_tensor_data", "bad_ir_version", "drop_input_dim", "huge_initializer"}
    per_mutator = {n: sum(1 for c in cases.values() if c == n) for n in never_benign}
    assert {n: by_mutator[n] for n in never_benign} == per_mutator
    print(f"\nONNX fuzz: {N_CASES} cases, {len(typed)} typed errors {dict(sorted(stages.items()))}, "
          f"{len(ok)} accepted and run, 0 leaks, 0 crashes")


def test_bit_flipped_onnx_through_the_fit_cli(seed_bytes, tmp_path, capsys):
    from etdeploy.cli.main import main
    from etdeploy.errors import OnnxModelError
    from etdeploy.onnx_safety import load_onnx_checked

    rejected = accepted = 0
    for i in range(12):
        path = tmp_path / f"flip{i}.onnx"
        path.write_bytes(mutate(seed_bytes, "bitflip", 100 + i))
        try:
            load_onnx_checked(path)
            valid = True
        except OnnxModelError:
            valid = False
        capsys.readouterr()
        code = main(["fit", "--onnx", str(path), "--target", "rad750"])
        captured = capsys.readouterr()
        if valid:
            accepted += 1
            assert code == 0 and "rad750" in captured.out
        else:
            rejected += 1
            assert code == 2
            assert captured.err.startswith("error: ") and len(captured.err.strip().splitlines()) == 1
            assert str(path) in captured.err and "Traceback" not in captured.err + captured.out
    assert rejected >= 5 and rejected + accepted == 12


@pytest.mark.parametrize("value, dim, words", [
    ("input", 2**40, "above the"),
    ("output", 2**62, "above the"),
    ("input", -3, "negative dimension"),
])
def test_absurd_declared_shapes_are_refused_before_any_allocation(seed_bytes, tmp_path, value, dim, words):
    import onnx

    from etdeploy.errors import OnnxModelError
    from etdeploy.onnx_safety import load_onnx_checked

    proto = onnx.load_from_string(seed_bytes)
    target = proto.graph.input[0] if value == "input" else proto.graph.output[0]
    target.type.tensor_type.shape.dim[1].dim_value = dim
    path = tmp_path / "absurd.onnx"
    path.write_bytes(proto.SerializeToString())
    with pytest.raises(OnnxModelError, match=words) as info:
        load_onnx_checked(path)
    assert info.value.path == str(path) and f"graph {value}" in str(info.value)


def test_a_graph_that_fails_only_at_run_time_gives_a_typed_error(seed_bytes, tmp_path):
    """Conv ``group`` far above the channel count passes onnx.checker and session creation, fails in run."""
    import onnx

    from etdeploy.errors import OnnxModelError
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session

    proto = onnx.load_from_string(seed_bytes)
    conv = next(n for n in proto.graph.node if n.op_type == "Conv")
    next(a for a in conv.attribute if a.name == "group").i = 10**12
    path = tmp_path / "group.onnx"
    path.write_bytes(proto.SerializeToString())
    session = make_session(load_onnx_checked(path))
    with pytest.raises(OnnxModelError, match="onnxruntime failed to run the model.*Conv"):
        session.run(None, {"input": np.zeros((1, 3, INPUT_SIZE, INPUT_SIZE), np.float32)})
