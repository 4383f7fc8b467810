"""Benchmark: flight bundles (``etdeploy package``) of a sliced alexnet-mini and a sliced AlexNet-227.

Per model: C generation time (emx-onnx-cgen), compile time per ISA (``make build-<isa>`` from a clean
build folder: host gcc and the PowerPC 750 / ARMv7-A / SPARC V8 cross compilers), section sizes and
stack per ISA, parity of the C with ONNX Runtime per ISA (max |delta logit|, ULP, labels; under
qemu-user for the cross ISAs), and batch-1 latency of the host C build against ONNX Runtime on this
machine (one thread, CPU time; ratio C/ORT from the same run).

The models have seeded random weights (not trained): sizes, compile times, latency and parity do not
depend on accuracy. alexnet-mini (64 px) keeps 96/160 neurons of dense1/dense2 (the demo's size);
AlexNet-227 is sliced at 95 % dense-layer masking as in ``benchmarks/export.py``. Vectors are real
test images of the bundled data (classes named after the data; the untrained logits mean nothing).

    .venv/bin/python benchmarks/package.py [--skip-alexnet] [--vectors N] [--force]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

REPORT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "package.json"


def sliced_mini(seed: int = 0):
    from etdeploy.models import build_model, masks, with_masks
    from etdeploy.pruning.slicing import slice_model

    model = with_masks(build_model("alexnet-mini", 5, seed=seed))
    m = masks(model)
    m["dense1"].set_kept(range(0, 192, 2))
    m["dense2"].set_kept(range(32, 192))
    return slice_model(model)[0]


def sliced_alexnet():
    from export import masked_alexnet

    from etdeploy.pruning.slicing import slice_model

    return slice_model(masked_alexnet(0.95))[0]


def bench_model(label: str, model, input_size: int, work: Path, dataset, vectors: int, cross_vectors: int) -> dict:
    """Export, package (all installed ISAs), time generation, compiles and inference of one model."""
    from etdeploy.export import export_model
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.packaging import codegen, package_model, time_bundle
    from etdeploy.packaging.csource import ISAS

    export = export_model(model, work / f"{label}-export")
    onnx_path = export.sim_path
    proto = load_onnx_checked(onnx_path)
    t0 = time.perf_counter()
    codegen.generate_c(proto, onnx_path)
    generation_s = time.perf_counter() - t0
    spec = {"arch": label, "class_names": tuple(dataset.classes), "input_size": input_size,
            "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    bundles = {}
    t0 = time.perf_counter()
    bundles["host"] = package_model(onnx=onnx_path, dataset=dataset, out=work / f"{label}-bundle", isas=(),
                                    target_ids=["rad750", "gr740", "stm32h7"], vectors=vectors, **spec)
    package_s = time.perf_counter() - t0
    # the cross ISAs with fewer vectors (qemu-user emulates floating point slowly)
    cross = package_model(onnx=onnx_path, dataset=dataset, out=work / f"{label}-cross", isas=("ppc", "arm", "sparc"),
                          target_ids=["rad750"], vectors=cross_vectors, **spec)
    compile_s = {}
    for isa in ISAS:
        check = cross.checks.get(isa.key)
        if check is None or check.status == "not run":
            continue
        with tempfile.TemporaryDirectory() as build:
            t1 = time.perf_counter()
            subprocess.run(["make", "-s", "-C", str(work / f"{label}-cross" / "c"), f"BUILD={build}",
                            f"build-{isa.key}"], check=True, capture_output=True)
            compile_s[isa.key] = time.perf_counter() - t1
    timing = time_bundle(work / f"{label}-bundle", repeat=5 if input_size > 100 else 20)
    run = bundles["host"]
    isas = {}
    for key, check in cross.checks.items():
        source = run.checks["host"] if key == "host" else check
        if source.sizes is None:
            isas[key] = {"status": source.status, "detail": source.detail}
            continue
        isas[key] = {"status": source.status, "vectors": source.vectors,
                     "max_abs_logit_delta": source.max_abs_logit_delta, "max_ulp": source.max_ulp,
                     "labels_equal": source.vectors - source.label_mismatches, **source.sizes.to_dict(),
                     "stack_bytes": source.stack_bytes, "compile_s": compile_s.get(key), "compiler": source.compiler}
    return {"macs": run.macs, "parameters": run.parameters, "onnx_bytes": run.source["bytes"],
            "c_source_bytes": sum((work / f"{label}-bundle" / "c" / f).stat().st_size
                                  for f in ("etd_model.c", "etd_model_data.c")),
            "generation_s": generation_s, "package_s_host_only": package_s, "isas": isas,
            "latency": {"c_ms": timing.c_seconds * 1e3, "ort_ms": timing.ort_seconds * 1e3,
                        "c_over_ort": timing.c_over_ort, "repeat": timing.repeat, "vectors": timing.vectors},
            "generator": run.generator["version"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-alexnet", action="store_true", help="alexnet-mini only.")
    parser.add_argument("--vectors", type=int, default=16, help="Golden vectors of the host check.")
    parser.add_argument("--force", action="store_true", help="Replace an existing report.")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force", file=sys.stderr)
        return 2

    import onnxruntime
    import torch
    from _common import environment, print_table

    from etdeploy.data import load_dataset
    from etdeploy.fileio import atomic_write_json

    torch.set_num_threads(1)
    dataset = load_dataset("bundled")
    models = {"alexnet-mini-sliced": (sliced_mini, 64, 4)}
    if not args.skip_alexnet:
        models["alexnet-227-sliced95"] = (sliced_alexnet, 227, 1)
    results = {}
    with tempfile.TemporaryDirectory(prefix="etdeploy-bench-package-") as work:
        for label, (make, size, cross_vectors) in models.items():
            print(f"== {label}", file=sys.stderr)
            results[label] = bench_model(label, make(), size, Path(work), dataset, args.vectors, cross_vectors)
    rows = []
    for label, r in results.items():
        for key, i in r["isas"].items():
            rows.append({"model": label, "isa": key, "check": i["status"], "max|dlogit|": i.get("max_abs_logit_delta"),
                         "ULP": i.get("max_ulp"), "labels": f"{i.get('labels_equal')}/{i.get('vectors')}",
                         "text B": i.get("text"), "rodata B": i.get("rodata"), "bss B": i.get("bss"),
                         "stack B": i.get("stack_bytes"), "compile s": i.get("compile_s")})
    print_table(rows, ["model", "isa", "check", "max|dlogit|", "ULP", "labels", "text B", "rodata B", "bss B",
                       "stack B", "compile s"])
    print()
    print_table([{"model": k, "MACs": r["macs"], "C source MB": r["c_source_bytes"] / 1e6,
                  "generate s": r["generation_s"], "C ms": r["latency"]["c_ms"], "ORT ms": r["latency"]["ort_ms"],
                  "C/ORT": r["latency"]["c_over_ort"]} for k, r in results.items()],
                ["model", "MACs", "C source MB", "generate s", "C ms", "ORT ms", "C/ORT"])
    doc = {"benchmark": "package", "environment": environment(), "onnxruntime": onnxruntime.__version__,
           "note": ("seeded random weights (sizes, timings and parity do not depend on accuracy); timings on a "
                    "shared machine: compare the C/ORT ratio, not absolute times; C = host gcc -O2 build of the "
                    "generated C, CPU time per batch-1 inference; ORT = CPU provider, 1 thread, ORT_ENABLE_ALL"),
           "models": results}
    atomic_write_json(args.out, doc, overwrite=True)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
