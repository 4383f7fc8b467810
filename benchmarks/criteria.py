"""Do the IG rank and the field's importance criteria prune better than random? Measured, with 95 % CIs.

    python benchmarks/criteria.py [--model DIR] [--data bundled] [--finetune-epochs 3] [--seeds 10] [--investigate]

On a trained model (default: alexnet-mini trained here on the bundled data, seed 0, 30 epochs, as
``etdeploy demo`` does) ranked on ``--rank-split`` (default train, 32 Gauss-Legendre steps, what
``etdeploy rank`` does by default):

1. every criterion masking ``flatten+dense1+dense2`` together at 50/75/90/95/98 %, accuracy on
   val+test (Wilson 95 % CI), ``random`` over ``--seeds`` seeds (mean, min, max);
2. the same after ``--finetune-epochs`` of fine-tuning with the masks held (train split, best on
   val; accuracy on test, the one split fine-tuning never sees), random over ``--finetune-seeds``;
3. the ``dense2`` single-layer sweep at 41 points (uniform and dense-tail), area with its bootstrap
   95 % CI, and the paired bootstrap CI of each criterion's area minus random's (same image
   resamples: a difference whose CI excludes 0 is larger than the image-sampling noise);
4. ``--investigate``: ranking split (train vs val, evaluated on test), quadrature steps (8/32/128),
   dead neurons (ranking-split dead, live on held-out images; masking them alone), redundancy of the
   kept set (per-class coverage, mean |correlation| of kept activations).

Writes ``reports/benchmarks/<name>.json`` and ``<name>.md`` (the tables). Same inputs, same numbers.
"""

from __future__ import annotations

import argparse
import copy
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, environment, write_json

ALL = ["flatten", "dense1", "dense2"]
PERCENTS = [50, 75, 90, 95, 98]
CRITERIA = ["bottom-first", "top-first", "ig-vote", "class-balanced", "magnitude", "magnitude-l1", "taylor",
            "activation", "apoz"]


def paired_diff(fractions, a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    """Area of curve ``a`` minus curve ``b`` (``(r, p, N)`` correctness each) and its paired bootstrap 95 % CI."""
    from etdeploy.pruning.sweep import bootstrap_areas, curve_area

    diff = bootstrap_areas(fractions, a, idx) - bootstrap_areas(fractions, b, idx)
    point = curve_area(fractions, list(a.mean(axis=(0, 2)))) - curve_area(fractions, list(b.mean(axis=(0, 2))))
    lo, hi = np.percentile(diff, [2.5, 97.5])
    return round(float(point), 6), round(float(lo), 6), round(float(hi), 6)


def point_diff(a: np.ndarray, b: np.ndarray, idx: np.ndarray) -> tuple[float, float, float]:
    """Accuracy of ``a`` minus ``b`` at one point (``(r, N)`` correctness) and its paired bootstrap 95 % CI."""
    da = a.astype(np.float64).mean(axis=0)[idx].mean(axis=1)
    db = b.astype(np.float64).mean(axis=0)[idx].mean(axis=1)
    lo, hi = np.percentile(da - db, [2.5, 97.5])
    return round(float(a.mean() - b.mean()), 6), round(float(lo), 6), round(float(hi), 6)


def sweep_table(result, criteria, seed: int) -> dict:
    """Per criterion: area, its CI, accuracy per point with Wilson CI, paired differences vs random."""
    from etdeploy.pruning.sweep import bootstrap_indices

    fractions = [c / result.width for c in result.curves[criteria[0]].counts]
    idx = bootstrap_indices(result.n_images, seed + 1)
    rnd = result.curves["random"]
    rows = {}
    for name in criteria:
        c = result.curves[name]
        row = {"auc": c.auc, "auc_ci95": list(c.auc_ci95), "accuracy": list(c.accuracy),
               "accuracy_ci95": [list(v) for v in c.accuracy_ci95]}
        if name != "random":
            row["auc_minus_random"] = paired_diff(fractions, c.correct, rnd.correct, idx)
            row["accuracy_minus_random"] = [point_diff(c.correct[:, i], rnd.correct[:, i], idx)
                                            for i in range(len(fractions))]
        else:
            row["band"] = c.band.to_dict() if c.band is not None else None
        rows[name] = row
    return {"counts": list(result.curves[criteria[0]].counts), "fractions": [round(f, 6) for f in fractions],
            "n_images": result.n_images, "criteria": rows, "settings": result.settings}


def finetune_table(model, ranking, data, criteria, percents, epochs: int, seeds: int) -> dict:
    """Test accuracy after masking ``ALL`` at each percent, before and after fine-tuning with the masks held."""
    from etdeploy.pruning import apply_percent, finetune_masked
    from etdeploy.training import TrainConfig, evaluate

    spec = model.spec
    out: dict = {}
    for name in criteria:
        runs = range(seeds) if name == "random" else [0]
        rows = []
        for q in percents:
            before, after = [], []
            for s in runs:
                work = copy.deepcopy(model)
                apply_percent(work, ranking, name, q, ALL, seed=s)
                before.append(evaluate(work, data["test"], spec.mean, spec.std).accuracy)
                config = TrainConfig(epochs=epochs, batch_size=32, lr=1e-3, seed=s)
                finetune_masked(work, data["train"], data["val"], config, progress=False)
                after.append(evaluate(work, data["test"], spec.mean, spec.std).accuracy)
            rows.append({"percent": q, "masked": _spread(before), "finetuned": _spread(after)})
        out[name] = rows
        print(f"  fine-tune {name}: " + ", ".join(f"{r['percent']}% {r['masked']['mean']:.3f}->"
                                                  f"{r['finetuned']['mean']:.3f}" for r in rows), flush=True)
    return {"epochs": epochs, "n_test": len(data["test"]), "rows": out}


def _spread(values) -> dict:
    v = np.asarray(values, dtype=np.float64)
    return {"mean": round(float(v.mean()), 6), "min": round(float(v.min()), 6), "max": round(float(v.max()), 6),
            "n": int(v.size)}


def rank(model, split, steps: int):
    from etdeploy.attribution import rank_model

    return rank_model(model, split.images, split.labels, steps=steps, batch_size=32, progress=False)


def investigate(model, ranking_train, data, heldout, seed: int) -> dict:
    """Ranking split, quadrature steps, dead neurons, redundancy of the kept set (see the module docstring)."""
    from etdeploy.pruning import pruning_order
    from etdeploy.pruning.sweep import layer_activations, sweep

    test = data["test"]
    out: dict = {}

    def dense2_and_all(ranking, label):
        one = sweep(model, ranking, test.images, test.labels, layer="dense2", schedules=["bottom-first", "ig-vote"],
                    points=41, grid="dense-tail", seed=seed)
        many = sweep(model, ranking, test.images, test.labels, layer=ALL, schedules=["bottom-first", "ig-vote"],
                     percents=[90, 95, 98], seed=seed)
        row = {name: {"dense2_auc": one.curves[name].auc, "dense2_auc_ci95": list(one.curves[name].auc_ci95),
                      "all_layers_accuracy": dict(zip(["90", "95", "98"], many.curves[name].accuracy))}
               for name in ("bottom-first", "ig-vote")}
        print(f"  {label}: " + ", ".join(f"{k} dense2 area {v['dense2_auc']:.4f}" for k, v in row.items()), flush=True)
        return row

    t0 = time.perf_counter()
    out["ranking_split"] = {"train (32 steps)": dense2_and_all(ranking_train, "rank on train"),
                            "val (32 steps)": dense2_and_all(rank(model, data["val"], 32), "rank on val")}
    out["steps"] = {f"{s} steps (train)": dense2_and_all(rank(model, data["train"], s), f"{s} steps")
                    for s in (8, 128)}
    baseline = sweep(model, ranking_train, test.images, test.labels, layer="dense2", schedules=["random"],
                     points=41, grid="dense-tail", seed=seed, random_seeds=10)
    out["random_reference_test"] = {"dense2_auc": baseline.curves["random"].auc,
                                    "band": [baseline.curves["random"].band.auc_min,
                                             baseline.curves["random"].band.auc_max]}

    # dead neurons: dead on the ranking split, live on held-out images; masking only them
    h, _ = layer_activations(model, "dense2", heldout[0])
    dead = {}
    for layer in ALL:
        la = ranking_train.layer(layer)
        hl, _ = layer_activations(model, layer, heldout[0])
        live_heldout = (hl != 0).any(dim=0).numpy()
        n_dead = int((~la.live).sum())
        res = sweep(model, ranking_train, heldout[0], heldout[1], layer=layer, schedules=["bottom-first"],
                    counts=sorted({0, n_dead}), seed=seed)
        acc = res.curves["bottom-first"].accuracy
        dead[layer] = {"width": la.width, "dead_on_ranking_split": n_dead,
                       "of_them_live_on_heldout": int((~la.live & live_heldout).sum()),
                       "accuracy_unmasked": acc[0], "accuracy_dead_masked": acc[-1]}
    out["dead_neurons"] = dead

    # redundancy: kept set of dense2 at 95 % (13 of 256 for alexnet-mini)
    la = ranking_train.layer("dense2")
    keep = la.width - int(np.floor(la.width * 0.05 + 0.5))
    act = h.numpy().astype(np.float64)
    best_class = np.argmax(la.rank_class, axis=0)  # the class whose loss each neuron lowers most
    red = {}
    for name in ("bottom-first", "class-balanced", "taylor", "random"):
        seeds = range(10) if name == "random" else [0]
        cover, corr = [], []
        for s in seeds:
            kept = np.sort(pruning_order(la, name, seed=s)[keep:])
            cover.append(np.bincount(best_class[kept], minlength=len(ranking_train.classes)))
            a = act[:, kept]
            a = a[:, a.std(axis=0) > 0]
            c = np.corrcoef(a.T) if a.shape[1] > 1 else np.ones((1, 1))
            corr.append(float(np.abs(c[np.triu_indices_from(c, 1)]).mean()) if a.shape[1] > 1 else 1.0)
        red[name] = {"kept": int(la.width - keep), "classes_served": np.mean(cover, axis=0).round(2).tolist(),
                     "mean_abs_corr": round(float(np.mean(corr)), 4)}
    out["redundancy_dense2_95"] = red
    out["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def markdown(doc: dict) -> str:
    lines = []
    a = doc.get("all_layers")
    if a is None:
        a = {"n_images": 0, "criteria": {}}
    else:
        lines.append(f"All layers (flatten+dense1+dense2) masked together, no fine-tuning; accuracy on {a['n_images']} "
                 "val+test images with Wilson 95 % CI; `random`: mean of "
                 f"{doc['seeds']} seeds [min, max]; Δ = paired bootstrap 95 % CI of accuracy minus random's mean.\n")
        head = "| criterion | " + " | ".join(f"{q} %" for q in PERCENTS) + " | Δ at 90 / 95 / 98 % |"
        lines += [head, "|" + "---|" * (len(PERCENTS) + 2)]
    for name, row in a["criteria"].items():
        cells = []
        for i, acc in enumerate(row["accuracy"]):
            lo, hi = row["accuracy_ci95"][i]
            if name == "random" and row.get("band"):
                b = row["band"]
                cells.append(f"{acc:.3f} [{b['accuracy_min'][i]:.3f}, {b['accuracy_max'][i]:.3f}]")
            else:
                cells.append(f"{acc:.3f} ({lo:.3f}-{hi:.3f})")
        deltas = "" if name == "random" else " / ".join(
            f"{d[0]:+.3f} ({d[1]:+.3f}, {d[2]:+.3f})" for d in row["accuracy_minus_random"][2:])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {deltas} |")
    if doc.get("finetune"):
        f = doc["finetune"]
        lines.append(f"\nSame masks, test accuracy ({f['n_test']} images) masked → after {f['epochs']} epoch(s) of "
                     f"fine-tuning with the masks held; `random`: mean of {doc['finetune_seeds']} seeds [min, max].\n")
        lines += ["| criterion | " + " | ".join(f"{q} %" for q in PERCENTS) + " |", "|" + "---|" * (len(PERCENTS) + 1)]
        for name, rows in f["rows"].items():
            cells = []
            for r in rows:
                m, t = r["masked"], r["finetuned"]
                if m["n"] > 1:
                    cells.append(f"{m['mean']:.3f} → {t['mean']:.3f} [{t['min']:.3f}, {t['max']:.3f}]")
                else:
                    cells.append(f"{m['mean']:.3f} → {t['mean']:.3f}")
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
    for key, title in (("dense2_uniform", "uniform"), ("dense2_dense_tail", "dense-tail")):
        if key not in doc:
            continue
        s = doc[key]
        lines.append(f"\n`dense2` alone, {len(s['counts'])}-point {title} grid, val+test ({s['n_images']} images): "
                     "area with bootstrap 95 % CI; area minus random's (paired bootstrap 95 % CI).\n")
        lines += ["| criterion | area | 95 % CI | area − random | 95 % CI |", "|---|---|---|---|---|"]
        for name, row in sorted(s["criteria"].items(), key=lambda kv: -kv[1]["auc"]):
            ci = row["auc_ci95"]
            if name == "random":
                b = row["band"]
                lines.append(f"| random ({len(b['seeds'])} seeds) | {row['auc']:.4f} | {ci[0]:.4f}-{ci[1]:.4f} | "
                             f"seeds {b['auc_min']:.4f}-{b['auc_max']:.4f} | |")
            else:
                d = row["auc_minus_random"]
                lines.append(f"| {name} | {row['auc']:.4f} | {ci[0]:.4f}-{ci[1]:.4f} | {d[0]:+.4f} | "
                             f"{d[1]:+.4f} to {d[2]:+.4f} |")
    if doc.get("investigation"):
        lines += ["", investigation_markdown(doc["investigation"])]
    return "\n".join(lines) + "\n"


def investigation_markdown(inv: dict) -> str:
    """The investigation's tables: ranking split / steps, dead neurons, redundancy of the kept set."""
    lines = [("Ranking split and quadrature steps (evaluated on test only, so a val ranking is not scored on its own "
             "images): `dense2` area (41-point dense-tail grid) and all-layers accuracy at 90/95/98 %.\n"),
             "| ranking | rank form | dense2 area | 95 % CI | all layers 90 / 95 / 98 % |", "|---|---|---|---|---|"]
    for group in ("ranking_split", "steps"):
        for label, row in inv[group].items():
            for form, v in row.items():
                acc = " / ".join(f"{a:.3f}" for a in v["all_layers_accuracy"].values())
                ci = v["dense2_auc_ci95"]
                lines.append(f"| {label} | {form} | {v['dense2_auc']:.4f} | {ci[0]:.4f}-{ci[1]:.4f} | {acc} |")
    r = inv["random_reference_test"]
    lines.append(f"| random, 10 seeds (test) | | {r['dense2_auc']:.4f} | seeds {r['band'][0]:.4f}-{r['band'][1]:.4f} | |")
    lines += ["", "Dead neurons (dead on the ranking split; masked first by every schedule), on val+test:\n",
              "| layer | width | dead on ranking split | of them live on held-out | accuracy | with them masked |",
              "|---|---|---|---|---|---|"]
    for layer, d in inv["dead_neurons"].items():
        lines.append(f"| {layer} | {d['width']} | {d['dead_on_ranking_split']} | {d['of_them_live_on_heldout']} | "
                     f"{d['accuracy_unmasked']:.3f} | {d['accuracy_dead_masked']:.3f} |")
    lines += ["", ("Redundancy of the `dense2` neurons kept at 95 % (val+test activations): how many kept neurons "
              "lower the loss of each class most (per-class rank argmax), and the mean |correlation| of the kept "
              "neurons' activations (random: mean of 10 seeds).\n"),
              "| schedule | kept | kept neurons per class | mean abs corr |", "|---|---|---|---|"]
    for name, v in inv["redundancy_dense2_95"].items():
        lines.append(f"| {name} | {v['kept']} | {v['classes_served']} | {v['mean_abs_corr']:.3f} |")
    return "\n".join(lines)


BEGIN, END = "<!-- criteria:begin -->", "<!-- criteria:end -->"


def write_section(path: Path, title: str, body: str) -> None:
    """Put ``body`` between the criteria markers of ``path`` (appended with ``title`` if absent)."""
    text = path.read_text() if path.is_file() else ""
    block = f"{BEGIN}\n{body}{END}\n"
    if BEGIN in text and END in text:
        text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END) + 1:]
    else:
        text = text.rstrip("\n") + f"\n\n## {title}\n\n" + block
    path.write_text(text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="trained model directory (default: train alexnet-mini on --data)")
    parser.add_argument("--data", default="bundled")
    parser.add_argument("--cap", type=int, default=None)
    parser.add_argument("--rank-split", default="train")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--seeds", type=int, default=10, help="random seeds of the sweeps")
    parser.add_argument("--finetune-epochs", type=int, default=3)
    parser.add_argument("--finetune-seeds", type=int, default=10, help="random seeds fine-tuned")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--investigate", action="store_true")
    parser.add_argument("--no-sweeps", action="store_true", help="skip the sweeps (e.g. a fine-tuning-only run)")
    parser.add_argument("--name", default="criteria")
    parser.add_argument("--comparison", type=Path, default=None,
                        help="also write the tables into this markdown file, between criteria markers")
    parser.add_argument("--title", default="Importance criteria vs random (issue 17)")
    args = parser.parse_args(argv)

    from etdeploy.data import load_dataset
    from etdeploy.data.images import load_split_images
    from etdeploy.models import load_model
    from etdeploy.pruning.sweep import sweep

    t0 = time.perf_counter()
    ds = load_dataset(args.data, cap=args.cap) if args.cap else load_dataset(args.data)
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = args.model
        if model_dir is None:
            from etdeploy.api import train_model

            model_dir = Path(tmp) / "model"
            train_model("alexnet-mini", ds, epochs=30, seed=0, out=model_dir, progress=False)
        model = load_model(model_dir)
    size = model.spec.input_size
    data = {s: load_split_images(ds, s, size, progress=False) for s in ("train", "val", "test")}
    heldout = (np.concatenate([data["val"].images, data["test"].images]),
               np.concatenate([data["val"].labels, data["test"].labels]))
    ranking = rank(model, data[args.rank_split], args.steps)
    print(f"ranked on {args.rank_split} ({len(data[args.rank_split])} images, {args.steps} steps)", flush=True)
    schedules = [*CRITERIA, "random"]
    doc: dict = {"model": str(args.model or "alexnet-mini trained here (bundled, seed 0, 30 epochs)"),
                 "data": ds.provenance(), "rank_split": args.rank_split, "steps": args.steps, "seeds": args.seeds,
                 "finetune_seeds": args.finetune_seeds, "environment": environment()}
    if not args.no_sweeps:
        res = sweep(model, ranking, heldout[0], heldout[1], layer=ALL, schedules=schedules, percents=PERCENTS,
                    seed=args.seed, random_seeds=args.seeds)
        doc["all_layers"] = sweep_table(res, schedules, args.seed)
        for key, grid in (("dense2_uniform", "uniform"), ("dense2_dense_tail", "dense-tail")):
            res = sweep(model, ranking, heldout[0], heldout[1], layer="dense2", schedules=schedules, points=41,
                        grid=grid, seed=args.seed, random_seeds=args.seeds)
            doc[key] = sweep_table(res, schedules, args.seed)
        save(doc, args, t0)  # each phase is written when done, so a long run leaves what it has measured
    if args.investigate:
        doc["investigation"] = investigate(model, ranking, data, heldout, args.seed)
        save(doc, args, t0)
    if args.finetune_epochs > 0:
        doc["finetune"] = finetune_table(model, ranking, data, schedules, PERCENTS, args.finetune_epochs,
                                         args.finetune_seeds)
        save(doc, args, t0)
    print(markdown(doc))
    return 0


def save(doc: dict, args, t0: float) -> None:
    """Write the JSON, the markdown tables and (with ``--comparison``) the comparison section."""
    doc["seconds"] = round(time.perf_counter() - t0, 1)
    write_json(args.name, doc)
    text = markdown(doc)
    (OUT_DIR / f"{args.name}.md").write_text(text)
    if args.comparison is not None:
        write_section(args.comparison, args.title, text)


if __name__ == "__main__":
    raise SystemExit(main())
