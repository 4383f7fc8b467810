"""Benchmark: AlexNet-227 (random weights) unpruned vs sliced at 50 % and 95 % dense-layer masking.

For each variant: parameters, simplified ONNX file size, MACC (etdeploy fit analysis), and ONNX
Runtime latency at batch 1 with one intra-op thread (CPU provider, ORT_ENABLE_ALL, spinning off),
median of interleaved repeats, as a ratio to the unpruned model measured in the same run.

Slicing uses etdeploy.pruning.slicing.slice_model. Masking % q keeps round(n (1 - q)) neurons of
dense1/dense2 (docs/method.md §3); for the flatten layer whole channels of the last conv are
kept (round(256 (1 - q)) channels x 36 positions), because only whole channels can be physically
removed from a plain Flatten -> Linear (partial channels would only zero columns). At 50 % this is
the paper's 4608/2048/2048; at 95 % it keeps 13 channels = 468 positions instead of 461.

    .venv/bin/python benchmarks/export.py [--quick] [--keep DIR] [--force]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPORT = Path(__file__).resolve().parents[1] / "reports" / "benchmarks" / "export.json"


def masked_alexnet(q: float, seed: int = 0):
    """AlexNet-227 with masks keeping ``1 - q`` of flatten (whole channels), dense1 and dense2."""
    from etdeploy.models import build_model, masks, with_masks

    model = with_masks(build_model("alexnet", 5, seed=seed))
    if q == 0:
        return model
    rng = np.random.default_rng(seed)
    m = masks(model)
    channels = round(256 * (1 - q))
    kept_channels = np.sort(rng.permutation(256)[:channels])
    m["flatten"].set_kept([int(c) * 36 + p for c in kept_channels for p in range(36)])
    for name in ("dense1", "dense2"):
        keep = round(4096 * (1 - q))
        m[name].set_kept(np.sort(rng.permutation(4096)[:keep]).tolist())
    return model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="Fewer repeats (5 instead of 25).")
    parser.add_argument("--keep", type=Path, default=None, help="Keep the exports in this new folder.")
    parser.add_argument("--force", action="store_true", help="Replace an existing report.")
    parser.add_argument("--out", type=Path, default=REPORT)
    args = parser.parse_args(argv)
    if args.out.exists() and not args.force:
        print(f"error: {args.out} exists; pass --force", file=sys.stderr)
        return 2

    import onnxruntime
    import torch

    from etdeploy.export import export_model
    from etdeploy.fileio import atomic_write_json
    from etdeploy.models import count_parameters, without_masks
    from etdeploy.onnx_safety import load_onnx_checked
    from etdeploy.ort_session import make_session
    from etdeploy.pruning.slicing import slice_model
    from etdeploy.targets import analyse_graph

    torch.set_num_threads(1)
    repeats, warmup = (5, 2) if args.quick else (25, 3)
    work = args.keep if args.keep is not None else Path(tempfile.mkdtemp(prefix="etdeploy-bench-export-"))
    variants = {}
    for label, q in (("unpruned", 0.0), ("sliced-50", 0.5), ("sliced-95", 0.95)):
        masked = masked_alexnet(q)
        model = without_masks(masked) if q == 0 else slice_model(masked)[0]
        t0 = time.perf_counter()
        result = export_model(model, work / label)
        export_s = time.perf_counter() - t0
        proto = load_onnx_checked(result.sim_path)
        analysis = analyse_graph(proto)
        variants[label] = {
            "masking_percent": q * 100,
            "parameters": count_parameters(model),
            "dense_widths": [m.out_features for m in model.classifier if isinstance(m, torch.nn.Linear)],
            "flatten_width": next(m.in_features for m in model.classifier if isinstance(m, torch.nn.Linear)),
            "onnx_sim_bytes": result.manifest["files"]["model.sim.onnx"]["bytes"],
            "macc": analysis.total_macc,
            "weights_bytes_fp32": analysis.weights_bytes_fp32,
            "peak_ram_bytes": analysis.peak_ram_bytes,
            "export_s": export_s,
            "session": make_session(proto, threads=1, opt_level="all"),
        }
        print(f"exported {label}: {variants[label]['parameters']:,} parameters in {export_s:.1f} s", file=sys.stderr)

    x = np.random.default_rng(0).standard_normal((1, 3, 227, 227)).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(warmup):
        for v in variants.values():
            v["session"].run(["logits"], {"input": x})
    for _ in range(repeats):  # interleaved so that load changes hit every variant alike
        for label, v in variants.items():
            t0 = time.perf_counter()
            v["session"].run(["logits"], {"input": x})
            times[label].append(time.perf_counter() - t0)

    base = variants["unpruned"]
    base_ms = statistics.median(times["unpruned"]) * 1e3
    rows = []
    for label, v in variants.items():
        v.pop("session")
        ms = statistics.median(times[label]) * 1e3
        v.update(latency_ms_median=ms, latency_ms_min=min(times[label]) * 1e3, latency_ratio=ms / base_ms,
                 parameter_ratio=v["parameters"] / base["parameters"], size_ratio=v["onnx_sim_bytes"] / base["onnx_sim_bytes"],
                 macc_ratio=v["macc"] / base["macc"])
        rows.append(v | {"label": label})

    header = f"{'variant':<10} {'flatten/dense':>18} {'parameters':>12} {'x':>6} {'ONNX MB':>8} {'x':>6} " \
             f"{'GMACC':>7} {'x':>6} {'ORT ms':>8} {'x':>6}"
    print(header)
    print("-" * len(header))
    for r in rows:
        widths = f"{r['flatten_width']}/{'/'.join(str(w) for w in r['dense_widths'][:-1])}"
        print(f"{r['label']:<10} {widths:>18} {r['parameters']:>12,} {r['parameter_ratio']:>6.3f} "
              f"{r['onnx_sim_bytes'] / 1e6:>8.1f} {r['size_ratio']:>6.3f} {r['macc'] / 1e9:>7.3f} {r['macc_ratio']:>6.3f} "
              f"{r['latency_ms_median']:>8.1f} {r['latency_ratio']:>6.3f}")
    print(f"ORT {onnxruntime.__version__}, batch 1, 1 intra-op thread, ORT_ENABLE_ALL, median of {repeats} "
          "interleaved runs; ratios (x) vs unpruned in this run. Shared, loaded machine: absolute ms are noisy.")
    doc = {
        "benchmark": "export",
        "model": "alexnet-227, 5 classes, random weights (seed 0)",
        "runtime": {"onnxruntime": onnxruntime.__version__, "threads": 1, "batch": 1,
                    "graph_optimization": "ORT_ENABLE_ALL", "repeats": repeats, "warmup": warmup,
                    "statistic": "median of interleaved runs"},
        "note": "timings taken on a shared machine under load; compare ratios, not absolute times",
        "variants": {r["label"]: {k: v for k, v in r.items() if k != "label"} for r in rows},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, doc, overwrite=True)
    print(f"wrote {args.out}")
    if args.keep is not None:
        print(f"exports kept in {work}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
