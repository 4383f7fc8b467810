"""Assemble report.json, report.html and the CSV tables from the stage folders of a run."""

from __future__ import annotations

import json
import platform
import shutil
import sys
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text, canonical_json
from etdeploy.report import plots
from etdeploy.report.html import Raw, card, fmt, img, page, table, verdict

PACKAGES = ("etdeploy", "torch", "numpy", "onnx", "onnxruntime", "onnxsim", "scikit-image", "matplotlib",
            "safetensors", "pillow", "click", "tqdm")


def _versions() -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def _stage_manifests(out: Path, names: list[str]) -> dict[str, dict[str, Any]]:
    manifests = {}
    for name in names:
        path = out / name / "stage.json"
        if path.is_file():
            manifests[name] = json.loads(path.read_text())
    return manifests


def _normalised_invocation(argv: list[str], out: Path) -> list[str]:
    text_out = str(out)
    return ["<out>" if a in (text_out, str(out.resolve())) else a for a in argv]


def build_report(ctx, tmp: Path) -> dict[str, Any]:
    """Write report.json, report.html and tables/*.csv into ``tmp`` (the report stage folder)."""
    from etdeploy.pipeline.runner import config_hash
    from etdeploy.pipeline.stages import stage_names

    names = [n for n in stage_names() if n != "report"]
    manifests = _stage_manifests(ctx.out, names)
    summaries = {name: m["summary"] for name, m in manifests.items()}
    provenance = {
        "config": ctx.config.to_dict(),
        "config_sha256": config_hash(ctx.config),
        "seed": ctx.config.seed,
        "versions": _versions(),
        "platform": {"system": platform.system(), "machine": platform.machine(), "release": platform.release()},
        "command": _normalised_invocation(list(ctx.cache.get("invocation") or []), ctx.out),
        "artefacts": {f"{name}/{rel}": digest for name, m in manifests.items()
                      for rel, digest in m["artefacts"].items()},
    }

    tables_dir = tmp / "tables"
    tables_dir.mkdir()
    csv_count = 0
    for name in names:
        for csv_path in sorted((ctx.out / name).rglob("*.csv")):
            target = tables_dir / f"{name}__{csv_path.relative_to(ctx.out / name).as_posix().replace('/', '__')}"
            shutil.copyfile(csv_path, target)
            csv_count += 1

    report = {"format": "etdeploy-report", "format_version": 1, "name": ctx.config.name,
              "stages": summaries, "provenance": provenance}
    atomic_write_json(tmp / "report.json", report)
    sections = [s for s in (builder(ctx, summaries) for builder in SECTIONS) if s is not None]
    sections.append(("provenance", "Provenance", _provenance_html(provenance)))
    title = f"etdeploy V&V report: {ctx.config.name}"
    train = summaries.get("train", {})
    subtitle = f"model {train.get('arch', '?')} on {summaries.get('data', {}).get('name', '?')} data"
    atomic_write_text(tmp / "report.html", page(title, subtitle, sections))
    return {"csv_tables": csv_count, "report_json_sha256": __import__("hashlib").sha256(
        canonical_json(report).encode()).hexdigest()}


# ------------------------------------------------------------------------------------------- sections
def _summary(ctx, s: dict[str, Any]) -> tuple[str, str, str]:
    cards = []
    if "train" in s:
        t = s["train"]
        cards.append(card("model", t["arch"], f" {t['input_size']} px"))
        cards.append(card("test accuracy (trained)", f"{t['accuracy']['test']:.3f}"))
        cards.append(card("parameters", f"{t['parameters']:,}"))
    for builder in SUMMARY_CARDS:
        cards.extend(builder(s))
    return ("summary", "Summary", f"<div class='cards'>{''.join(cards)}</div>")


def _data(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "data" not in s:
        return None
    d = s["data"]
    rows = [[c, d["counts"]["train"][k], d["counts"]["val"][k], d["counts"]["test"][k]]
            for k, c in enumerate(d["classes"])]
    notes = "".join(f"<p class='bad'>warning: {w}</p>" for w in d["warnings"])
    return ("data", "Data", f"<p>source <code>{d['source']}</code>; every image's SHA-256 is in "
            f"<code>data/manifest.csv</code> (sha256 {d['manifest_sha256'][:16]}…).</p>"
            + table(["class", "train", "val", "test"], rows) + notes + f"<p class='muted'>Cite: {d['citation']}</p>")


def _training(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "train" not in s:
        return None
    t = s["train"]
    classes = s.get("data", {}).get("classes", [])
    rows = [[c, t["per_class_test_accuracy"][k]] for k, c in enumerate(classes)]
    conf = [[classes[k]] + list(row) for k, row in enumerate(t["confusion_test"])] if classes else []
    parts = [table(["split", "accuracy"], [[k, t["accuracy"][k]] for k in ("train", "val", "test")]),
             "<h3>Per-class test accuracy</h3>", table(["class", "accuracy"], rows),
             "<h3>Test confusion matrix (rows: true, columns: predicted)</h3>",
             table(["true \\ predicted"] + classes, conf)]
    if t.get("history"):
        parts.append(img(plots.training_curve(t["history"]), "training curve"))
    return ("training", "Training", "".join(parts))


def _ranking(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "rank" not in s:
        return None
    from etdeploy.attribution.result import load_ranking

    r = s["rank"]
    ranking = load_ranking(ctx.stage_dir("rank") / "ranking")
    order = r["layer_order"]
    rows = [[n, r["layers"][n]["width"], r["layers"][n]["live"], r["layers"][n]["dead"], r["layers"][n]["gap_mean"],
             r["layers"][n]["gap_max"]] for n in order]
    parts = [f"<p>Integrated gradients at the input of each dense layer, {r['steps']} {r['method']} steps, on "
             f"{r['n_images']} {r['split']} images. Rank = −E[attribution to the loss] (higher = more useful); "
             "dead neurons (never active) have rank exactly 0 and are pruned first. Full per-neuron tables: "
             "<code>rank/ranking/&lt;layer&gt;.csv</code>.</p>",
             table(["layer", "neurons", "live", "dead", "completeness gap mean", "gap max"], rows),
             img(plots.rank_histogram({n: (ranking.layers[n].rank, ranking.layers[n].live) for n in order}), "ranks")]
    classes = r["classes"]
    for name in order:
        v = r["layers"][name]
        la = ranking.layers[name]
        header = ["neuron", "rank", "activation mean"] + [f"E[A→{c}]" for c in classes]
        top = [[t["index"], t["rank"], float(la.activation_mean[t["index"]])]
               + [float(x) for x in la.ea[t["index"]]] for t in v["top"][:5]]
        bottom = [[t["index"], t["rank"], float(la.activation_mean[t["index"]])]
                  + [float(x) for x in la.ea[t["index"]]] for t in v["bottom_live"][:5]]
        parts += [f"<h3>{name}: top 5 neurons</h3>", table(header, top),
                  f"<h3>{name}: bottom 5 live neurons</h3>", table(header, bottom)]
    last = order[-1]
    best = r["layers"][last]["top"][0]["index"]
    worst = r["layers"][last]["bottom_live"][0]["index"] if r["layers"][last]["bottom_live"] else best
    parts.append("<h3>Conditional expected attributions of the best and worst live neuron of " + last + "</h3>")
    parts.append("<div class='grid'>" + img(plots.ea_bars(ranking.layers[last].ea_class, classes, best, last), "EA")
                 + img(plots.ea_bars(ranking.layers[last].ea_class, classes, worst, last), "EA") + "</div>")
    return ("ranking", "Neuron attribution and ranking", "".join(parts))


def _sweep(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "sweep" not in s:
        return None
    w = s["sweep"]
    main = [n for n in w["schedules"] if not n.startswith("class-ea")]
    rows = [[n, w["auc"][n]] + list(w["auc_per_class"][n]) for n in main]
    parts = [f"<p>Accuracy on the {w['split']} split ({w['n_images']} images) while masking the neurons of "
             f"<b>{w['layer']}</b> in schedule order, without retraining. Area under each curve on x = fraction "
             "masked (higher = more robust). Expected: bottom-first above random above top-first.</p>",
             table(["schedule", "area"] + [f"area {c}" for c in w["classes"]], rows),
             img(plots.sweep_curves(w["curves"], w["width"], w["layer"], main, "accuracy vs neurons masked"),
                 "sweep")]
    class_ea = [n for n in w["schedules"] if n.startswith("class-ea")]
    if class_ea:
        parts.append("<h3>Per-class EA pruning (paper Fig. 11): masking the neurons with the highest E<sup>k</sup>"
                     "<sub>kk</sub> of one class k</h3><div class='grid'>")
        for name in class_ea:
            k = int(name.split(":")[1])
            parts.append(img(plots.class_ea_curves(w["curves"][name], w["classes"], w["width"], w["layer"],
                                                   f"pruning by EA of '{w['classes'][k]}'"), name))
        parts.append("</div>")
    return ("sweep", "Pruning sweeps", "".join(parts))


def _prune(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "prune" not in s:
        return None
    p = s["prune"]
    rows = []
    for r in p["percents"].values():
        rows.append([f"{r['percent']:g} %", ", ".join(f"{k} {v}" for k, v in r["kept"].items()),
                     r["accuracy_original"], r["accuracy_masked"], r["accuracy_finetuned"],
                     r["parameters"]["original"], r["parameters"]["sliced"], r["parameters"]["percent_cut"],
                     r["sliced_vs_masked_max_abs_logit_diff"]])
    parts = [f"<p>Schedule <b>{p['schedule']}</b> on layers {', '.join(p['layers'])}; fine-tuning "
             f"{p['finetune_epochs']} epochs with the masks held (masked weights receive no update). Accuracy on "
             "the test split. Parameters after physical slicing (an ordinary smaller network).</p>",
             table(["masking", "neurons kept", "acc. original", "acc. masked", "acc. fine-tuned", "params before",
                    "params after", "% cut", "sliced vs masked max |Δ logit|"], rows)]
    params = p["export_params"]
    layer_rows = [[r.get("name", r.get("layer", "")), r.get("shape_before", ""), r.get("shape_after", ""),
                   r.get("before", 0), r.get("after", 0)] for r in params.get("layers", [])]
    if layer_rows:
        parts += [f"<h3>Parameter reduction per layer at {p['export_percent']:g} %</h3>",
                  table(["layer", "shape before", "shape after", "params before", "params after"], layer_rows, left=3)]
    for r in p["percents"].values():
        if r["finetune_history"]:
            parts.append(img(plots.training_curve(r["finetune_history"], f"fine-tuning at {r['percent']:g} %"),
                             "fine-tuning"))
    return ("prune", "Pruning, fine-tuning and slicing", "".join(parts))


def _parity(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "parity" not in s:
        return None
    q = s["parity"]
    acc_rows = [[n, q["kinds"][n], q["accuracy"][n], q["reference"].get(n)] for n in q["names"]]
    pair_rows = [[f"{r['a']} vs {r['b']}", r["max_abs_logit_delta"], r["label_disagreements"],
                  verdict(r["label_disagreements"] == 0 and r["max_abs_logit_delta"] <= q["tolerance"])]
                 for r in q["pairs"]]
    exp = s.get("export", {})
    exp_rows = [[v, e["sim_bytes"], e["parameters"], ", ".join(f"{k}×{n}" for k, n in sorted(e["ops"].items())),
                 Raw(f"<code>{e['sim_sha256'][:16]}…</code>")] for v, e in exp.items()]
    return ("parity", "Export and parity", table(["ONNX (simplified)", "bytes", "parameters", "ops", "sha256"],
                                                  exp_rows)
            + f"<p>{q['n']} {q['split']} images, tolerance {q['tolerance']:g} (absolute, logits); ONNX Runtime CPU, "
            "graph optimisations off, 1 thread; second opinion: onnx.reference.ReferenceEvaluator on "
            f"{q['reference_images']} images.</p>"
            + table(["implementation", "kind", "accuracy", "ReferenceEvaluator Δ"], acc_rows)
            + table(["pair", "max |Δ logit|", "top-1 disagreements", "verdict"], pair_rows)
            + f"<p>Overall: {verdict(q['passed'])}</p>")


_MAP_KIND_TEXT = {
    "prob": ("P(predicted)", "the probability of the predicted class", "low (blue)"),
    "drop": ("drop of P(predicted)", "the drop of the predicted class's probability", "high (red)"),
    "logit": ("logit(predicted)", "the logit (pre-softmax score) of the predicted class", "low (blue)"),
    "logprob": ("log P(predicted)", "the log-probability of the predicted class", "low (blue)"),
}


def _explain(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "explain" not in s:
        return None
    e = s["explain"]
    short, long, important = _MAP_KIND_TEXT[e.get("map_kind", "prob")]
    figs = []
    for m in e["maps"]:
        png = (ctx.stage_dir("explain") / m["png"]).read_bytes()
        ssim = f", SSIM vs exact {m['ssim_vs_exact']:.3f}" if "ssim_vs_exact" in m else ""
        speed = f", modelled speedup {m['modelled_speedup']:.2f}×" if m.get("modelled_speedup") else ""
        figs.append(f"<figure>{img(png, m['image'])}<figcaption>{m['kind']}: true <b>{m['true_class']}</b>, "
                    f"predicted <b>{m['predicted_class']}</b> (p={m['base_probability']:.3f}); map of {short} "
                    f"in [{m['map_min']:.3f}, {m['map_max']:.3f}]{speed}{ssim}</figcaption></figure>")
    tuning = ""
    if e.get("tuning"):
        t = e["tuning"]
        from etdeploy.occlusion.approx import required_ssim

        margin = f" (tuning maps asked for {required_ssim(t['target_ssim'], t['margin']):.2f})" if t.get("margin") else ""
        tuning = (f"<p>Approximate mode tuned to SSIM ≥ {t['target_ssim']}{margin}: τ = {t['tau']}, r_drill = {t['r_drill']}, "
                  f"stage-1 stride {t['stage1_stride']}; achieved min SSIM {t['min_ssim']:.3f}, modelled speedup "
                  f"{t['modelled_speedup']:.2f}×; flat maps left out of tuning: {len(t['flat_images'])}.</p>")
    return ("explain", "Occlusion explanations", f"<p>Occlusion maps (KRYPTON incremental executor on ONNX Runtime, "
            f"mode <b>{e['mode']}</b>, patch {e['patch']}, stride {e['stride']}) of the {e['model']} model: "
            f"{long} when a gray (data-set mean) patch covers each position; {important} = the region the "
            "prediction depends on. Modelled speedup = naive MACs / executed MACs.</p>" + tuning
            + f"<div class='grid'>{''.join(figs)}</div>")


def _fit(ctx, s: dict[str, Any]) -> tuple[str, str, str] | None:
    if "fit" not in s:
        return None
    f = s["fit"]
    rows = []
    for tid in f["ids"]:
        t = f["targets"][tid]
        o, sl = t["original"], t["sliced"]
        ram = sl["checks"].get("ram", {})
        rows.append([f"{t['name']} ({tid})", t["confidence"], verdict(o["fits"], "fits", "does not fit"),
                     verdict(sl["fits"], "fits", "does not fit"), ram.get("detail", ""), o["latency_s"],
                     sl["latency_s"], ", ".join(sl["unsupported_ops"]) or "none"])
    a = f["analysis"]
    comp = [[k, a["original"][k], a["sliced"][k]] for k in ("parameters", "total_macc", "weights_bytes_fp32",
                                                           "weights_bytes_int8", "peak_activation_bytes")]
    return ("fit", "Flight-processor fit", table(["figure", "original", "sliced"], comp)
            + "<p>Latency estimates are MACC / sustained MAC/s (bounds; memory traffic and non-MAC ops ignored). "
            "Pruning the dense layers cuts memory far more than compute: the convolutions dominate MACs. "
            "Profiles tagged <i>approx</i> hold recalled figures, not datasheet values.</p>"
            + table(["target", "confidence", "original", "sliced", "sliced RAM check", "latency s (original)",
                     "latency s (sliced)", "unsupported ops"], rows))


def _provenance_html(p: dict[str, Any]) -> str:
    rows = [[k, v] for k, v in p["versions"].items()]
    arts = [[k, Raw(f"<code>{v}</code>")] for k, v in sorted(p["artefacts"].items())]
    return (f"<p>config sha256 <code>{p['config_sha256']}</code>, seed {p['seed']}, platform "
            f"{p['platform']['system']} {p['platform']['machine']}; command: <code>"
            f"{' '.join(p['command']) or '(Python API)'}</code></p>"
            + table(["package", "version"], rows)
            + f"<details><summary>SHA-256 of {len(arts)} artefacts</summary>{table(['artefact', 'sha256'], arts)}"
            + "</details>" + f"<details><summary>configuration</summary><pre>{json.dumps(p['config'], indent=2)}"
            + "</pre></details>")


def _pruned_cards(s: dict[str, Any]) -> list[str]:
    if "prune" not in s:
        return []
    p = s["prune"]
    r = p["percents"].get(next((k for k, v in p["percents"].items() if v["percent"] == p["export_percent"]), ""))
    if r is None:
        return []
    after = r["accuracy_finetuned"] if r["accuracy_finetuned"] is not None else r["accuracy_masked"]
    return [card(f"test accuracy, {r['percent']:g} % pruned", f"{r['accuracy_masked']:.3f} → {after:.3f}",
                 " masked → fine-tuned"),
            card("parameters after slicing", f"{r['parameters']['sliced']:,}",
                 f" (−{r['parameters']['percent_cut']:.1f} %)")]


def _verdict_cards(s: dict[str, Any]) -> list[str]:
    cards = []
    if "parity" in s:
        cards.append(card("parity (4 implementations)", "PASS" if s["parity"]["passed"] else "FAIL",
                          f" max |Δ| {max(p['max_abs_logit_delta'] for p in s['parity']['pairs']):.1e}"))
    if "fit" in s:
        f = s["fit"]
        fits = sum(1 for t in f["targets"].values() if t["sliced"]["fits"])
        orig = sum(1 for t in f["targets"].values() if t["original"]["fits"])
        cards.append(card("targets the pruned model fits", f"{fits}/{len(f['ids'])}", f" (unpruned {orig})"))
    if "data" in s:
        d = s["data"]
        cards.append(card("data", d["name"], f" {sum(sum(v) for v in d['counts'].values())} images"))
    return cards


SUMMARY_CARDS: list[Callable[[dict[str, Any]], list[str]]] = [_pruned_cards, _verdict_cards]
SECTIONS: list[Callable[[Any, dict[str, Any]], tuple[str, str, str] | None]] = [_summary, _data, _training, _ranking, _sweep,
                                                                               _prune, _parity, _explain, _fit]

__all__ = ["build_report", "fmt", "verdict"]
