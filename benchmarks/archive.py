"""Archive-scale throughput (docs/method.md §14): images per minute with 1 and 2 workers, memory per worker.

AlexNet-227 (5 classes), occlusion P=16 S=4, exact and approximate (fixed tau/r_drill, so no tuning
enters the timing), on the first --images MSL v1 test images (../shared/datasets/msl-v1, paper5).
The model is trained here, deterministically (seed 0), for --epochs on the bundled subset: occlusion
cost does not depend on the weights in exact mode (every position is computed) and only through the
drill-down's selected positions in approx mode (a fixed fraction r_drill), so a short training is
enough for a throughput figure. 1 worker runs in this process; 2 workers are Ray actors (one local
Ray, started before the timing; actor start-up is inside the timing). Each worker has 1 ORT thread
(the archive's default: results then do not depend on the worker count).

    nice -n 10 .venv/bin/python benchmarks/archive.py [--images 50] [--epochs 1]

Writes reports/benchmarks/archive.{json,md}. The projection for N nodes is a projection: N x the
measured 2-worker rate of this machine, assuming nodes like this one and a shared file system.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from _common import OUT_DIR, REPO, environment, print_table, write_json

MSL = REPO.parent / "shared" / "datasets" / "msl-v1"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--modes", default="exact,approx")
    parser.add_argument("--workers", default="1,2")
    parser.add_argument("--tau", type=float, default=0.5)
    parser.add_argument("--r-drill", type=float, default=0.25)
    args = parser.parse_args()
    os.environ.setdefault("ETDEPLOY_PROGRESS", "0")
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")
    import ray

    from etdeploy.api import train_model
    from etdeploy.archive import explain_archive, select_images
    from etdeploy.data import load_dataset
    from etdeploy.export import export_model
    from etdeploy.models import load_model

    work = Path(tempfile.mkdtemp(prefix="etdeploy-bench-archive-"))
    try:
        t0 = time.perf_counter()
        train_model("alexnet", load_dataset("bundled"), epochs=args.epochs, seed=0, out=work / "model",
                    progress=False)
        model = load_model(work / "model")
        onnx = export_model(model, work / "export").sim_path
        setup_s = time.perf_counter() - t0
        data = load_dataset(MSL)
        images = select_images(data, "test", limit=args.images)
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
        rows = []
        for mode in args.modes.split(","):
            extra = {"tau": args.tau, "r_drill": args.r_drill} if mode == "approx" else {}
            reference = None
            for workers in (int(w) for w in args.workers.split(",")):
                out = work / f"{mode}-{workers}"
                load_before = os.getloadavg()
                t0 = time.perf_counter()
                run = explain_archive(onnx, images, mean=model.spec.mean, std=model.spec.std,
                                      class_names=model.spec.class_names, out=out, patch=16, stride=4, mode=mode,
                                      workers=workers, progress=False, **extra)
                wall = time.perf_counter() - t0
                import json

                timing = json.loads((out / "timing.json").read_text())
                per_image = [t["seconds"] for t in timing["images"]]
                rss = {}
                for t in timing["images"]:
                    rss[t["worker"]] = max(rss.get(t["worker"], 0.0), t["max_rss_mb"])
                index = (out / "index.csv").read_bytes()
                reference = reference or index
                rows.append({"mode": mode, "workers": workers, "images": run.images, "wall_s": round(wall, 1),
                             "images_per_min": round(60 * run.images / wall, 2),
                             "occlusion_s_per_image": round(sum(per_image) / len(per_image), 2),
                             "max_rss_mb_per_worker": round(max(rss.values()), 0), "worker_processes": len(rss),
                             "same_index_as_1_worker": index == reference,
                             "load_avg_1min_before": round(load_before[0], 2),
                             "load_avg_1min_after": round(os.getloadavg()[0], 2)})
                shutil.rmtree(out)
            base = [r for r in rows if r["mode"] == mode]
            for r in base:
                r["speedup_vs_1_worker"] = round(r["images_per_min"] / base[0]["images_per_min"], 2)
        ray.shutdown()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    columns = ["mode", "workers", "images", "wall_s", "images_per_min", "speedup_vs_1_worker",
               "occlusion_s_per_image", "max_rss_mb_per_worker", "same_index_as_1_worker", "load_avg_1min_before",
               "load_avg_1min_after"]
    print_table(rows, columns)
    projection = []
    for mode in args.modes.split(","):
        best = max((r for r in rows if r["mode"] == mode), key=lambda r: r["workers"])
        for nodes in (1, 4, 16, 64):
            rate = nodes * best["images_per_min"]
            projection.append({"mode": mode, "nodes": nodes, "workers_per_node": best["workers"],
                               "projected_images_per_min": round(rate, 1),
                               "projected_hours_msl_test_1305": round(1305 / rate / 60, 2)})
    print("PROJECTION (not measured): N nodes like this one x the measured rate above")
    print_table(projection, list(projection[0]))
    payload = {"benchmark": "archive", "model": f"alexnet 227 px, trained {args.epochs} epoch(s) on bundled, seed 0",
               "setup_seconds": round(setup_s, 1), "occlusion": {"patch": 16, "stride": 4, "approx_tau": args.tau,
                                                                  "approx_r_drill": args.r_drill},
               "images": f"first {args.images} MSL v1 test images (paper5)", "rows": rows,
               "projection": {"note": "projection, not a measurement: N x the measured rate of this machine "
                                      "(2 cores), nodes alike, shared file system, driver and scheduling overhead "
                                      "ignored", "rows": projection},
               "environment": environment()}
    write_json("archive", payload)
    md = ["# Archive-scale throughput (benchmarks/archive.py)", "",
          (f"1-minute load averages before and after each row are in the table (the benchmark's own workers included). {payload['model']}; "
           f"{payload['images']}; P=16 S=4; approx tau={args.tau} r_drill={args.r_drill} (fixed, no tuning). "
           "Throughput does not depend on accuracy (see the script's docstring)."), "",
          "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    md += ["| " + " | ".join(str(r.get(c)) for c in columns) + " |" for r in rows]
    md += ["", "**Projection (not measured)**: N nodes like this one, each at the measured 2-worker rate.", "",
           "| " + " | ".join(projection[0]) + " |", "|" + "---|" * len(projection[0])]
    md += ["| " + " | ".join(str(v) for v in p.values()) + " |" for p in projection]
    (OUT_DIR / "archive.md").write_text("\n".join(md) + "\n")
    print(f"wrote {OUT_DIR / 'archive.md'}")


if __name__ == "__main__":
    main()
