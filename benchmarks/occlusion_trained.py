"""Approximate occlusion on a *trained* model: speedup over naive ORT at a target SSIM, on held-out images.

    python benchmarks/occlusion_trained.py --run runs/paper [--variant original] [--tune 2] [--eval 3]

Uses a pipeline run (e.g. ``benchmarks/reproduce_paper.py``'s ``runs/paper``): its exported ONNX model and
test images. Tunes (tau, r_drill, stage-1 stride) on the first ``--tune`` correctly classified test images to
the target SSIM, then on ``--eval`` other test images times naive ORT (full map), incremental exact (full
map) and the tuned approximate mode, and reports SSIM of the approximate map against the exact one.
Patch 16, stride 4 (53x53 maps at 227 px). Ratios are within one run; the thread count is fixed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, print_table, write_json  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--variant", choices=["original", "sliced"], default="original")
    parser.add_argument("--patch", type=int, default=16)
    parser.add_argument("--stride", type=int, default=4)
    parser.add_argument("--tune", type=int, default=2)
    parser.add_argument("--eval", type=int, default=3)
    parser.add_argument("--target-ssim", type=float, default=0.9)
    parser.add_argument("--map-kind", default="logit", choices=["prob", "logit", "logprob", "drop"],
                        help="logit by default: a confident trained model gives flat probability maps")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()

    import numpy as np

    from etdeploy.data import load_dataset
    from etdeploy.data.images import load_split, normalise
    from etdeploy.models import load_model
    from etdeploy.occlusion.approx import map_ssim, tune_approx
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
    from etdeploy.training import predict_logits

    cfg = json.loads((args.run / "run.json").read_text())["config"]["data"]
    ds = load_dataset(cfg["source"], grouping=cfg["grouping"], recipe=cfg["recipe"], seed=cfg["seed"], cap=cfg["cap"])
    model = load_model(args.run / "train" / "model")
    spec = model.spec
    test = load_split(ds.split("test"), spec.input_size)
    pred = predict_logits(model, test.images, spec.mean, spec.std).argmax(1).numpy()
    correct = [i for i in range(len(test)) if pred[i] == test.labels[i]]
    picks = correct[:: max(1, len(correct) // (args.tune + args.eval))][: args.tune + args.eval]
    images = {i: normalise(test.images[i:i + 1], spec.mean, spec.std).numpy()[0] for i in picks}
    onnx_path = args.run / "export" / args.variant / "model.sim.onnx"
    ex = IncrementalOcclusionExecutor(onnx_path, input_size=spec.input_size, patch=args.patch, stride=args.stride,
                                      threads=args.threads)
    r = ex.redundancy_ratio()["R"]
    t0 = time.perf_counter()
    tune = tune_approx(ex, [images[i] for i in picks[: args.tune]], target_ssim=args.target_ssim,
                       map_kind=args.map_kind)
    tune_s = time.perf_counter() - t0
    rows = []
    for i in picks[args.tune:]:
        times = {}
        maps = {}
        for mode, kwargs in (("naive", {"mode": "naive"}), ("exact", {"mode": "exact"}),
                             ("approx", tune.run_kwargs())):
            start = time.perf_counter()
            res = ex.run(images[i], **kwargs)
            times[mode] = time.perf_counter() - start
            maps[mode] = res.map(args.map_kind)
        rng = float(maps["exact"].max() - maps["exact"].min())
        rows.append({"image": test.paths[i].name, "class": spec.class_names[int(test.labels[i])],
                     "map_range": round(rng, 4), "naive_s": round(times["naive"], 2),
                     "exact_s": round(times["exact"], 2), "approx_s": round(times["approx"], 2),
                     "exact_speedup": round(times["naive"] / times["exact"], 2),
                     "approx_speedup": round(times["naive"] / times["approx"], 2),
                     "ssim_approx_vs_exact": round(float(map_ssim(maps["exact"], maps["approx"])), 4),
                     "exact_max_abs_diff_vs_naive": float(np.abs(maps["exact"] - maps["naive"]).max())})
    print(f"model {onnx_path} R={r:.2f}; tuned on {args.tune} images to SSIM {args.target_ssim}: "
          f"tau={tune.tau} r_drill={tune.r_drill} stage1={tune.stage1_stride} (min SSIM {tune.min_ssim:.3f}, "
          f"modelled speedup {tune.modelled_speedup:.2f}x, flat maps left out {len(tune.flat)}; {tune_s:.0f} s)")
    print_table(rows, list(rows[0]))
    write_json("occlusion_trained", {"model": str(onnx_path), "R": r, "patch": args.patch, "stride": args.stride,
                                     "map_kind": args.map_kind, "tuning": tune.as_dict(), "tuning_seconds": tune_s,
                                     "rows": rows, "environment": environment(),
                                     "note": "machine shared with a concurrent pipeline run (nice 19)"})


if __name__ == "__main__":
    main()
