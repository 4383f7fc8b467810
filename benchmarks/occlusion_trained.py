"""Approximate occlusion on a *trained* model: speedup over naive ORT at a target SSIM, on held-out images.

    python benchmarks/occlusion_trained.py --run runs/paper [--variant original] [--tune 3] [--eval 6]
    python benchmarks/occlusion_trained.py --model runs/vgg16 --onnx runs/vgg16.onnx \
        --data ../shared/datasets/msl-v1 --cap 300 --naive-positions 256 --taus 1.0

Uses a pipeline run (e.g. ``benchmarks/reproduce_paper.py``'s ``runs/paper``, or a ``make demo`` run for
alexnet-mini): its exported ONNX model and test images; or a model directory, its ONNX export and a data
set (``--model``/``--onnx``/``--data``, the paper recipe). Tunes (tau, r_drill, stage-1 stride) on ``--tune``
test images (spread over the test split, interleaved with the held-out ones) to the target SSIM plus the
tuner's safety margin, then on ``--eval`` *other* test images times naive ORT (full map), incremental exact (full map) and the tuned
approximate mode, and reports the SSIM of each approximate map against the exact one. Held-out maps whose
range is below the flat threshold are shown but flagged (SSIM is ill-conditioned there) and left out of the
summary, as in tuning. Ratios are within one run; the thread count is fixed. ``--naive-positions N`` times
naive ORT on a seeded random subset of N positions and scales it to the full grid (every naive position
costs the same full forward; for VGG16 a full naive map takes 10+ minutes on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, print_table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, default=None, help="pipeline run directory")
    parser.add_argument("--model", type=Path, default=None, help="model directory (instead of --run)")
    parser.add_argument("--onnx", type=Path, default=None, help="its ONNX export (with --model)")
    parser.add_argument("--data", default="../shared/datasets/msl-v1", help="data set (with --model)")
    parser.add_argument("--cap", type=int, default=300, help="images per class and split cap (with --model)")
    parser.add_argument("--naive-positions", type=int, default=0,
                        help="time naive on this many random positions and scale (0: the full map)")
    parser.add_argument("--taus", default="1.0,0.8,0.6,0.5,0.4", help="tuner's tau grid")
    parser.add_argument("--stage1-factors", default="2,3,4", help="tuner's stage-1 stride factors")
    parser.add_argument("--variant", choices=["original", "sliced"], default="original")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--tune", type=int, default=3)
    parser.add_argument("--eval", type=int, default=6)
    parser.add_argument("--target-ssim", type=float, default=0.9)
    parser.add_argument("--margin", type=float, default=0.05, help="tuner's SSIM safety margin")
    parser.add_argument("--map-kind", default="logit", choices=["prob", "logit", "logprob", "drop"],
                        help="logit by default: a confident trained model gives flat probability maps")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--name", default=None, help="JSON name under reports/benchmarks (default from the run)")
    args = parser.parse_args()

    import numpy as np

    from etdeploy.data import load_dataset
    from etdeploy.data.images import load_split, normalise
    from etdeploy.models import load_model
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
    from etdeploy.occlusion.tuner import map_ssim, tune_approx

    if (args.run is None) == (args.model is None) or (args.model is not None and args.onnx is None):
        parser.error("give --run DIR, or --model DIR with --onnx FILE")
    if args.run is not None:
        cfg = json.loads((args.run / "run.json").read_text())["config"]["data"]
        spec = load_model(args.run / "train" / "model").spec  # input size, mean/std, classes: same after slicing
        onnx_path = args.run / "export" / args.variant / "model.sim.onnx"
    else:
        cfg = {"source": args.data, "grouping": "paper5", "recipe": "paper", "seed": 0, "cap": args.cap}
        spec = load_model(args.model).spec
        onnx_path = args.onnx
    ds = load_dataset(cfg["source"], grouping=cfg["grouping"], recipe=cfg["recipe"], seed=cfg["seed"], cap=cfg["cap"])
    test = load_split(ds.split("test"), spec.input_size)
    n = args.tune + args.eval
    spread = list(range(0, len(test), max(1, len(test) // n)))[:n]
    # tuning images interleaved with the held-out ones (the test split is ordered by class)
    tune_at = set(np.linspace(0, len(spread) - 1, args.tune).round().astype(int).tolist()) if args.tune else set()
    picks = [spread[k] for k in sorted(tune_at)] + [spread[k] for k in range(len(spread)) if k not in tune_at]
    images = {i: normalise(test.images[i:i + 1], spec.mean, spec.std).numpy()[0] for i in picks}
    ex = IncrementalOcclusionExecutor(onnx_path, input_size=spec.input_size, patch=args.patch, stride=args.stride,
                                      threads=args.threads)
    r = ex.redundancy_ratio()["R"]
    t0 = time.perf_counter()
    tune = tune_approx(ex, [images[i] for i in picks[: args.tune]], target_ssim=args.target_ssim,
                       map_kind=args.map_kind, margin=args.margin,
                       taus=[float(v) for v in args.taus.split(",")],
                       stage1_factors=[int(v) for v in args.stage1_factors.split(",")])
    tune_s = time.perf_counter() - t0
    print(f"model {onnx_path} R={r:.2f}; tuned on {args.tune} images to SSIM {args.target_ssim} + margin "
          f"{args.margin}: tau={tune.tau} r_drill={tune.r_drill} stage1={tune.stage1_stride} (min SSIM "
          f"{tune.min_ssim:.3f}, modelled speedup {tune.modelled_speedup:.2f}x, flat maps left out {len(tune.flat)}; "
          f"{tune_s:.0f} s)", flush=True)
    rows = []
    ex.unoccluded_logits(images[picks[0]])  # start the naive session before any timing
    for i in picks[args.tune:]:
        times, maps, results = {}, {}, {}
        for mode, kwargs in (("exact", {"mode": "exact"}), ("approx", tune.run_kwargs())):
            start = time.perf_counter()
            res = ex.run(images[i], **kwargs)
            times[mode] = time.perf_counter() - start
            maps[mode], results[mode] = res.map(args.map_kind), res
        ny, nx = results["exact"].shape
        if args.naive_positions and args.naive_positions < ny * nx:
            chosen = np.sort(np.random.default_rng(i).choice(ny * nx, args.naive_positions, replace=False))
            iy, ix = np.divmod(chosen, nx)
            ex.naive_logits_at(images[i], iy[:2], ix[:2])  # warm-up: session start is not scaled up with the rest
            start = time.perf_counter()
            naive = ex.naive_logits_at(images[i], iy, ix)
            times["naive"] = (time.perf_counter() - start) * (ny * nx) / len(chosen)
            naive_diff = float(np.abs(naive - results["exact"].logits[iy, ix]).max())
        else:
            start = time.perf_counter()
            res = ex.run(images[i], mode="naive")
            times["naive"] = time.perf_counter() - start
            naive_diff = float(np.abs(res.logits - results["exact"].logits).max())
        rng = float(maps["exact"].max() - maps["exact"].min())
        row = {"image": test.paths[i].name, "class": spec.class_names[int(test.labels[i])],
               "predicted": spec.class_names[results["exact"].target], "map_range": round(rng, 4),
               "flat": rng < 0.05, "naive_s": round(times["naive"], 2), "exact_s": round(times["exact"], 2),
               "approx_s": round(times["approx"], 2), "exact_speedup": round(times["naive"] / times["exact"], 2),
               "approx_speedup": round(times["naive"] / times["approx"], 2),
               "modelled_speedup": round(results["approx"].naive_macs / results["approx"].macs, 2),
               "ssim_approx_vs_exact": round(float(map_ssim(maps["exact"], maps["approx"])), 4) if rng > 0 else None,
               "exact_max_abs_logit_diff_vs_naive": naive_diff}
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, list(rows[0]))
    scored = [row for row in rows if not row["flat"]]
    summary = {
        "held_out_maps": len(rows), "flat_maps": len(rows) - len(scored),
        "min_ssim": min(row["ssim_approx_vs_exact"] for row in scored) if scored else None,
        "maps_below_target": sum(row["ssim_approx_vs_exact"] < args.target_ssim for row in scored),
        "approx_speedup_min": min(row["approx_speedup"] for row in rows),
        "approx_speedup_median": float(np.median([row["approx_speedup"] for row in rows])),
        "exact_speedup_median": float(np.median([row["exact_speedup"] for row in rows])),
        "exact_speedup_over_R": float(np.median([row["exact_speedup"] for row in rows])) / r,
    }
    print(json.dumps(summary))
    name = args.name or f"occlusion_trained_{spec.arch}_{args.variant}"
    write_json(name, {"model": str(onnx_path), "arch": spec.arch, "input_size": spec.input_size, "R": r,
                      "patch": args.patch, "stride": args.stride, "map_kind": args.map_kind,
                      "target_ssim": args.target_ssim, "margin": args.margin, "tuning": tune.as_dict(),
                      "tuning_images": [test.paths[i].name for i in picks[: args.tune]],
                      "tuning_seconds": tune_s, "naive_positions_timed": args.naive_positions or None, "rows": rows, "summary": summary, "environment": environment(),
                      "threads": args.threads})


if __name__ == "__main__":
    main()
