"""The pipeline's stages. Each reads earlier stages' artefacts from the run directory (so a resumed
run needs nothing in memory) and writes its own into a temporary folder that becomes its stage folder.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text, sha256_file
from etdeploy.pipeline.runner import RunContext, Stage


# ----------------------------------------------------------------------------------------------- helpers
def dataset(ctx: RunContext):
    from etdeploy.data import load_dataset

    d = ctx.config.data
    return ctx.cached("dataset", lambda: load_dataset(d.source, grouping=d.grouping, recipe=d.recipe, seed=d.seed,
                                                      cap=d.cap))


def split_images(ctx: RunContext, split: str, size: int):
    from etdeploy.data.images import load_split

    return ctx.cached(f"images:{split}:{size}", lambda: load_split(dataset(ctx).split(split), size,
                                                                   progress=ctx.progress, desc=f"decode {split}"))


def trained_model(ctx: RunContext):
    """A fresh copy of the trained model (callers may modify it)."""
    from etdeploy.models import load_model

    return load_model(ctx.stage_dir("train") / "model")


def csv_text(header: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([fmt_cell(v) for v in row])
    return buf.getvalue()


def fmt_cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(round(value, 9))
    return str(value)


# ----------------------------------------------------------------------------------------------- data
def run_data(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.progress import progress_bar

    ds = dataset(ctx)
    rows = []
    for split in ("train", "val", "test"):
        for sample in progress_bar(ds.split(split), desc=f"hash {split}", enabled=ctx.progress):
            rows.append([split, sample.path.relative_to(ds.root).as_posix(), sample.label, ds.classes[sample.label],
                         sample.source_class, sha256_file(sample.path)])
    manifest = csv_text(["split", "path", "label", "class", "source_class", "sha256"], rows)
    atomic_write_text(tmp / "manifest.csv", manifest)
    info = ds.describe()
    info["root"] = ctx.config.data.source
    atomic_write_json(tmp / "data.json", info)
    counts = ds.counts()
    return {"name": ds.name, "source": ctx.config.data.source, "classes": list(ds.classes), "counts": counts,
            "citation": ds.citation, "warnings": list(ds.warnings),
            "manifest_sha256": sha256_file(tmp / "manifest.csv")}


def describe_data(s: dict[str, Any]) -> str:
    sizes = "/".join(str(sum(s["counts"][k])) for k in ("train", "val", "test"))
    return f"{s['name']}: {len(s['classes'])} classes, train/val/test {sizes} images"


# ----------------------------------------------------------------------------------------------- train
def run_train(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.api import train_model
    from etdeploy.models import count_parameters, load_model, save_model
    from etdeploy.training import evaluate

    m = ctx.config.model
    ds = dataset(ctx)
    if m.load:
        model = load_model(m.load)
        if tuple(model.spec.class_names) != tuple(ds.classes):
            from etdeploy.errors import ModelError

            raise ModelError(f"model classes {list(model.spec.class_names)} differ from the data's "
                             f"{list(ds.classes)}", m.load)
        evals = {s: evaluate(model, split_images(ctx, s, model.spec.input_size), model.spec.mean,
                             model.spec.std).to_dict() for s in ("train", "val", "test")}
        metrics = {"arch": model.spec.arch, "parameters": count_parameters(model), "classes": list(ds.classes),
                   "loaded_from": str(m.load), "evaluation": evals}
        save_model(model, tmp / "model")
        atomic_write_json(tmp / "model" / "metrics.json", metrics)
    else:
        model, metrics = train_model(m.arch, ds, epochs=m.epochs, seed=m.seed, lr=m.lr, batch_size=m.batch_size,
                                     input_size=m.input_size, out=tmp / "model", progress=ctx.progress)
    ev = metrics["evaluation"]
    return {"arch": metrics["arch"], "parameters": metrics["parameters"], "input_size": model.spec.input_size,
            "accuracy": {s: ev[s]["accuracy"] for s in ("train", "val", "test")},
            "per_class_test_accuracy": ev["test"]["per_class_accuracy"],
            "confusion_test": ev["test"]["confusion"],
            "history": metrics.get("training", {}).get("history", []),
            "best_epoch": metrics.get("training", {}).get("best_epoch"),
            "weights_sha256": sha256_file(tmp / "model" / "model.safetensors")}


def describe_train(s: dict[str, Any]) -> str:
    a = s["accuracy"]
    return (f"{s['arch']} {s['parameters']:,} parameters, train/val/test accuracy "
            f"{a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")


# ----------------------------------------------------------------------------------------------- rank
def stratified_subset(labels, limit: int | None):
    """Indices of at most ``limit`` images keeping each class's share (first images of each class)."""
    import numpy as np

    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n)
    classes, counts = np.unique(labels, return_counts=True)
    quota = {int(c): max(1, int(round(limit * k / n))) for c, k in zip(classes, counts)}
    taken = {c: 0 for c in quota}
    keep = []
    for i, y in enumerate(labels):
        if taken[int(y)] < quota[int(y)]:
            keep.append(i)
            taken[int(y)] += 1
    return np.asarray(keep, dtype=np.int64)


def run_rank(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.attribution import rank_model, save_ranking

    r = ctx.config.ranking
    model = trained_model(ctx)
    images = split_images(ctx, r.split, model.spec.input_size)
    keep = stratified_subset(images.labels, r.max_images)
    ranking = rank_model(model, images.images[keep], images.labels[keep], layers=list(r.layers), steps=r.steps,
                         method=r.method, batch_size=r.batch_size, progress=ctx.progress, split=r.split,
                         seed=ctx.config.seed)
    save_ranking(ranking, tmp / "ranking")
    layers = {}
    for name, la in ranking.layers.items():
        order = sorted(range(la.width), key=lambda i: (-float(la.rank[i]), i))
        layers[name] = {"width": la.width, "live": la.n_live, "dead": la.width - la.n_live,
                        "gap_mean": float(la.gap_mean), "gap_max": float(la.gap_max),
                        "top": [{"index": i, "rank": float(la.rank[i])} for i in order[:10]],
                        "bottom_live": [{"index": i, "rank": float(la.rank[i])}
                                        for i in [j for j in reversed(order) if la.live[j]][:10]]}
    return {"n_images": len(keep), "split": r.split, "steps": r.steps, "method": r.method,
            "classes": list(ranking.classes), "class_counts": list(ranking.class_counts), "layers": layers,
            "layer_order": list(ranking.layers)}


def describe_rank(s: dict[str, Any]) -> str:
    parts = [f"{n} {s['layers'][n]['live']}/{s['layers'][n]['width']} live" for n in s["layer_order"]]
    return f"{s['n_images']} images, {s['steps']} steps: " + ", ".join(parts)


# ----------------------------------------------------------------------------------------------- sweep
def run_sweep_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.pruning.run import run_sweep

    sw = ctx.config.sweep
    ds = dataset(ctx)
    schedules = list(sw.schedules)
    if sw.class_ea:
        schedules += [f"class-ea:{k}" for k in range(len(ds.classes))]
    result = run_sweep(ctx.stage_dir("train") / "model", ctx.stage_dir("rank") / "ranking", schedules=schedules,
                       layer=sw.layer, split=sw.split, dataset=ds, out=tmp / "sweep", points=sw.points,
                       seed=ctx.config.seed, progress=ctx.progress)
    d = result.to_dict()
    return {"layer": d["layer"], "width": d["width"], "split": sw.split, "n_images": d["n_images"],
            "schedules": schedules, "classes": d["classes"],
            "auc": {name: c["auc"] for name, c in d["curves"].items()},
            "auc_per_class": {name: c["auc_per_class"] for name, c in d["curves"].items()},
            "curves": {name: {"counts": c["counts"], "accuracy": c["accuracy"],
                              "per_class_accuracy": c["per_class_accuracy"]} for name, c in d["curves"].items()}}


def describe_sweep(s: dict[str, Any]) -> str:
    main = [n for n in s["schedules"] if not n.startswith("class-ea")]
    return f"{s['layer']} ({s['width']} neurons) on {s['split']}: area " + ", ".join(
        f"{n} {s['auc'][n]:.3f}" for n in main)


# ----------------------------------------------------------------------------------------------- prune
def percent_dir(percent: float) -> str:
    return f"p{percent:g}".replace(".", "_")


def run_prune_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.pruning.run import prune

    pc = ctx.config.prune
    results = {}
    for percent in pc.percents:
        summary = prune(ctx.stage_dir("train") / "model", ctx.stage_dir("rank") / "ranking", schedule=pc.schedule,
                        percent=percent, dataset=dataset(ctx), out=tmp / percent_dir(percent), layers=list(pc.layers),
                        finetune_epochs=pc.finetune_epochs, lr=ctx.config.model.lr,
                        batch_size=ctx.config.model.batch_size, seed=ctx.config.seed, progress=ctx.progress)
        acc = summary["test_accuracy"]
        results[percent_dir(percent)] = {
            "percent": percent, "kept": summary["kept"],
            "accuracy_original": acc["original"]["accuracy"], "accuracy_masked": acc["masked"]["accuracy"],
            "accuracy_finetuned": acc.get("finetuned", {}).get("accuracy"),
            "per_class_finetuned": acc.get("finetuned", acc["masked"])["per_class_accuracy"],
            "parameters": summary["parameters"], "sliced_vs_masked_max_abs_logit_diff":
                summary["parity"]["max_abs_logit_diff"],
            "finetune_history": (summary.get("finetune") or {}).get("history", [])}
    params = json.loads((tmp / percent_dir(pc.export_percent) / "params.json").read_text())
    return {"schedule": pc.schedule, "layers": list(pc.layers), "finetune_epochs": pc.finetune_epochs,
            "percents": results, "export_percent": pc.export_percent, "export_params": params}


def describe_prune(s: dict[str, Any]) -> str:
    parts = []
    for r in s["percents"].values():
        ft = r["accuracy_finetuned"]
        parts.append(f"{r['percent']:g}%: acc {r['accuracy_masked']:.3f}"
                     + (f" -> {ft:.3f} fine-tuned" if ft is not None else "")
                     + f", params -{r['parameters']['percent_cut']:.1f}%")
    return "; ".join(parts)


# ----------------------------------------------------------------------------------------------- export
def pruned_dir(ctx: RunContext) -> Path:
    return ctx.stage_dir("prune") / percent_dir(ctx.config.prune.export_percent)


def run_export_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.export import export_model
    from etdeploy.models import load_model

    out = {}
    for name, model_dir in (("original", ctx.stage_dir("train") / "model"), ("sliced", pruned_dir(ctx) / "sliced")):
        result = export_model(load_model(model_dir), tmp / name)
        files = result.manifest["files"]
        out[name] = {"onnx_bytes": files["model.onnx"]["bytes"], "sim_bytes": files["model.sim.onnx"]["bytes"],
                     "onnx_sha256": files["model.onnx"]["sha256"], "sim_sha256": files["model.sim.onnx"]["sha256"],
                     "ops": files["model.sim.onnx"]["op_histogram"],
                     "parameters": files["model.sim.onnx"]["parameters"],
                     "simplification_delta": result.manifest["simplification_check"]["max_abs_logit_delta"],
                     "opset": result.manifest["opset"]}
    return out


def describe_export(s: dict[str, Any]) -> str:
    return (f"original {s['original']['sim_bytes'] / 1e6:.2f} MB, sliced {s['sliced']['sim_bytes'] / 1e6:.2f} MB "
            f"ONNX ({s['sliced']['parameters']:,} parameters)")


# ----------------------------------------------------------------------------------------------- parity
def run_parity_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.models import load_model
    from etdeploy.parity import check_parity

    masked = load_model(pruned_dir(ctx) / "masked")
    sliced = load_model(pruned_dir(ctx) / "sliced")
    export = ctx.stage_dir("export") / "sliced"
    images = split_images(ctx, ctx.config.parity.split, masked.spec.input_size)
    report = check_parity({"masked torch": masked, "sliced torch": sliced, "onnx": export / "model.onnx",
                           "simplified onnx": export / "model.sim.onnx"}, images.images, images.labels,
                          masked.spec.mean, masked.spec.std, tol=ctx.config.parity.tolerance)
    d = report.to_dict()
    atomic_write_json(tmp / "parity.json", d)
    return {"split": ctx.config.parity.split, **d}


def describe_parity(s: dict[str, Any]) -> str:
    worst = max(p["max_abs_logit_delta"] for p in s["pairs"])
    return (f"{'PASS' if s['passed'] else 'FAIL'}: 4 implementations on {s['n']} {s['split']} images, "
            f"max |delta logit| {worst:.2g} (tolerance {s['tolerance']:g})")


# ----------------------------------------------------------------------------------------------- explain
def pick_explain_images(labels, predictions, per_class: int) -> list[tuple[int, str]]:
    """For each class, up to ``per_class`` correctly classified images and one misclassified one (if any)."""
    chosen: list[tuple[int, str]] = []
    for k in sorted(set(int(v) for v in labels)):
        correct = [i for i in range(len(labels)) if labels[i] == k and predictions[i] == k][:per_class]
        wrong = [i for i in range(len(labels)) if labels[i] == k and predictions[i] != k][:1]
        chosen += [(i, "correct") for i in correct] + [(i, "misclassified") for i in wrong]
    return chosen


def run_explain_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.data.images import normalise
    from etdeploy.models import load_model
    from etdeploy.occlusion.approx import map_ssim, tune_approx
    from etdeploy.occlusion.executor import IncrementalOcclusionExecutor
    from etdeploy.occlusion.output import write_result
    from etdeploy.progress import progress_bar
    from etdeploy.training import predict_logits

    oc = ctx.config.occlusion
    model = load_model(pruned_dir(ctx) / "sliced")
    spec = model.spec
    test = split_images(ctx, "test", spec.input_size)
    predictions = predict_logits(model, test.images, spec.mean, spec.std).argmax(dim=1).numpy()
    picks = pick_explain_images(test.labels, predictions, oc.images_per_class)
    onnx_path = ctx.stage_dir("export") / "sliced" / "model.sim.onnx"
    executor = IncrementalOcclusionExecutor(onnx_path, input_size=spec.input_size, patch=oc.patch, stride=oc.stride)
    floats = {i: normalise(test.images[i:i + 1], spec.mean, spec.std).numpy()[0] for i, _ in picks}
    tuning = None
    run_kwargs: dict[str, Any] = {"mode": oc.mode}
    if oc.mode == "approx" and picks:
        tuning = tune_approx(executor, [floats[i] for i, _ in picks], target_ssim=oc.target_ssim,
                             margin=oc.ssim_margin, map_kind=oc.map_kind)
        run_kwargs = tuning.run_kwargs()
    maps = []
    for i, kind in progress_bar(picks, desc="occlusion", enabled=ctx.progress):
        result = executor.run(floats[i], **run_kwargs)
        stem = f"test{i:04d}_{kind}"
        files = write_result(tmp, stem, result, test.images[i], oc.map_kind, spec.class_names[result.target])
        entry = {"image": test.paths[i].name, "index": int(i), "kind": kind,
                 "true_class": spec.class_names[int(test.labels[i])],
                 "predicted_class": spec.class_names[int(predictions[i])], **result.summary(), **files}
        values = result.map(oc.map_kind)
        entry["map_min"], entry["map_max"] = float(values.min()), float(values.max())
        if oc.mode == "approx":
            exact = executor.run(floats[i], mode="exact", target_class=result.target)
            entry["ssim_vs_exact"] = float(map_ssim(exact.map(oc.map_kind), values))
        maps.append(entry)
    return {"mode": oc.mode, "patch": oc.patch, "stride": oc.stride, "map_kind": oc.map_kind,
            "model": "sliced (simplified ONNX)",
            "maps": maps, "tuning": None if tuning is None else tuning.as_dict(),
            "input_size": spec.input_size}


def describe_explain(s: dict[str, Any]) -> str:
    if not s["maps"]:
        return "no images"
    speed = [m["modelled_speedup"] for m in s["maps"] if m.get("modelled_speedup")]
    extra = f", modelled speedup over naive {min(speed):.2f}-{max(speed):.2f}x" if speed else ""
    return f"{len(s['maps'])} {s['mode']} maps (patch {s['patch']}, stride {s['stride']}){extra}"


# ----------------------------------------------------------------------------------------------- fit
def run_fit_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.targets import fit_onnx_file, load_profiles

    profiles = load_profiles()
    ids = sorted(profiles) if "all" in ctx.config.targets.ids else list(ctx.config.targets.ids)
    missing = [i for i in ids if i not in profiles]
    if missing:
        from etdeploy.errors import TargetProfileError

        raise TargetProfileError(f"unknown target(s) {', '.join(missing)}; known: {', '.join(sorted(profiles))}")
    results: dict[str, Any] = {}
    analyses: dict[str, Any] = {}
    for variant in ("original", "sliced"):
        path = ctx.stage_dir("export") / variant / "model.sim.onnx"
        for target_id in ids:
            report = fit_onnx_file(path, profiles[target_id])
            d = report.to_dict()
            analyses[variant] = d["analysis"]
            checks = {c["resource"]: {"status": c["status"], "need": c["need"], "available": c["available"],
                                      "unit": c["unit"], "detail": c["detail"]} for c in d["checks"]}
            results.setdefault(target_id, {"name": profiles[target_id].name,
                                           "confidence": d["target"].get("confidence")})[variant] = {
                "fits": d["fits"], "latency_s": d["latency_s"], "latency_lower_bound_s": d["latency_lower_bound_s"],
                "unsupported_ops": d["unsupported_ops"], "checks": checks,
                "int8_fits": all(c["status"] != "does not fit" for c in d["int8_checks"])}
    atomic_write_json(tmp / "fit.json", {"targets": results, "analysis": analyses})
    for variant, a in analyses.items():
        rows = [[r["id"], r["name"], r["op"], "x".join(str(v) for v in r["output_shape"]), r["params"], r["macc"]]
                for r in a["layers"]]
        atomic_write_text(tmp / f"layers_{variant}.csv",
                          csv_text(["id", "name", "op", "output_shape", "params", "macc"], rows))
    summary_analysis = {v: {k: a[k] for k in ("total_macc", "parameters", "weights_bytes_fp32", "weights_bytes_int8",
                                                "peak_activation_bytes", "peak_ram_bytes")} for v, a in analyses.items()}
    return {"targets": results, "analysis": summary_analysis, "ids": ids}


def describe_fit(s: dict[str, Any]) -> str:
    fits = sum(1 for t in s["targets"].values() if t["sliced"]["fits"])
    orig = sum(1 for t in s["targets"].values() if t["original"]["fits"])
    return f"sliced model fits {fits}/{len(s['ids'])} targets (unpruned: {orig}/{len(s['ids'])})"


# ----------------------------------------------------------------------------------------------- report
def run_report(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.report import build_report

    return build_report(ctx, tmp)


def describe_report(s: dict[str, Any]) -> str:
    return f"report.html, report.json and {s['csv_tables']} CSV tables"


STAGES: list[Stage] = [
    Stage("data", run_data, describe_data),
    Stage("train", run_train, describe_train),
    Stage("rank", run_rank, describe_rank),
    Stage("sweep", run_sweep_stage, describe_sweep),
    Stage("prune", run_prune_stage, describe_prune),
    Stage("export", run_export_stage, describe_export),
    Stage("parity", run_parity_stage, describe_parity),
    Stage("explain", run_explain_stage, describe_explain),
    Stage("fit", run_fit_stage, describe_fit),
    Stage("report", run_report, describe_report),
]


def stage_names() -> list[str]:
    return [s.name for s in STAGES]


def load_json(path: Path) -> Any:
    return json.loads(path.read_text())
