"""Compress to a target (docs/method.md §13): search time, candidates, front and the chosen model's accuracy
against the unpruned model, on alexnet-mini against stm32h7, gr740 and rad750.

    nice -n 10 python benchmarks/compress.py [--model DIR --ranking DIR] [--epochs 20] [--finetune-epochs 0]

Without ``--model``: alexnet-mini trained here on the bundled data (seed 0, ``--epochs``) and ranked on the
training split (8 Gauss-Legendre steps). Targets: the three shipped profiles, plus ``stm32h7-1mb``, the
STM32H7 profile with a 1 MB flash budget (a synthetic case where alexnet-mini must be pruned hard; the
shipped STM32H7's 2 MB hold it unpruned). Every search uses the defaults of ``etdeploy compress``
(coarse grid 0/50/75/90/95/98 % per layer, every criterion, fp32 and int8, 2 refinement rounds).
Writes ``reports/benchmarks/compress.json`` and ``compress.md``. AlexNet-227 is not run here (see the
note in the table file).
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import OUT_DIR, environment, print_table, write_json

TARGETS = ["stm32h7", "gr740", "rad750", "stm32h7-1mb"]
COLUMNS = ["target", "search_s", "points", "costed", "bounded", "front", "chosen", "precision", "val_acc",
           "test_acc", "test_acc_unpruned", "flash_bytes", "flash_budget", "unpruned_fits"]


def synthetic_profile(folder: Path) -> Path:
    from etdeploy.targets import default_targets_dir

    text = (default_targets_dir() / "stm32h7.toml").read_text(encoding="utf-8")
    text = re.sub(r'(?m)^id = "stm32h7"', 'id = "stm32h7-1mb"', text)
    text = re.sub(r"(?m)^flash_bytes = [0-9_]+", "flash_bytes = 1_048_576", text)
    path = folder / "stm32h7-1mb.toml"
    path.write_text(text, encoding="utf-8")
    return path


def main() -> None:
    import torch

    torch.set_num_threads(2)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None)
    parser.add_argument("--ranking", default=None)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--finetune-epochs", type=int, default=0)
    parser.add_argument("--name", default="compress")
    parser.add_argument("--criteria", default=None, help="Comma-separated criteria (default: all)")
    parser.add_argument("--note", default="", help="A line for the table file (e.g. how the model was made).")
    args = parser.parse_args()

    from etdeploy.api import train_model
    from etdeploy.attribution.rank_dirs import rank_dirs
    from etdeploy.compress import compress_dirs
    from etdeploy.data import load_dataset

    ds = load_dataset("bundled")
    work = Path(tempfile.mkdtemp(prefix="etdeploy-bench-compress-"))
    model_dir, ranking_dir = args.model, args.ranking
    if model_dir is None:
        model_dir = work / "model"
        train_model("alexnet-mini", ds, epochs=args.epochs, seed=0, out=model_dir, progress=False)
    if ranking_dir is None:
        ranking_dir = work / "rank"
        rank_dirs(model_dir, ds, out=ranking_dir, steps=8, progress=False)
    synthetic = synthetic_profile(work)
    rows, runs = [], {}
    for target in TARGETS:
        ident = str(synthetic) if target == "stm32h7-1mb" else target
        start = time.perf_counter()
        run = compress_dirs(model_dir, ranking_dir, dataset=ds, target=ident, out=work / f"out-{target}",
                            finetune_epochs=args.finetune_epochs, progress=False,
                            criteria=args.criteria.split(",") if args.criteria else None)
        seconds = time.perf_counter() - start
        c = run.chosen
        rows.append({"target": target, "search_s": round(seconds, 1), "points": run.evaluated, "costed": run.costed,
                     "bounded": run.bounded, "front": len(run.front), "chosen": c.label, "precision": c.precision,
                     "val_acc": round(c.accuracy, 4), "test_acc": round(run.test.chosen, 4),
                     "test_acc_unpruned": round(run.test.original, 4), "flash_bytes": c.cost.flash_bytes,
                     "flash_budget": run.target.flash_bytes,
                     "unpruned_fits": bool(run.original.cost is not None and run.original.cost.fits)})
        runs[target] = {"reason": run.reason, "front": [
            {"label": f.label, "accuracy": f.accuracy, "ci": [f.ci_low, f.ci_high], "source": f.accuracy_source,
             "flash_bytes": f.cost.flash_bytes, "ram_bytes": f.cost.ram_bytes, "macc": f.cost.macc,
             "latency_s": f.cost.latency_s, "fits": f.cost.fits} for f in run.front]}
        print(f"{target}: {seconds:.1f} s, chosen {c.label}")
        if target == "stm32h7-1mb":  # the README's front plot
            (OUT_DIR / f"{args.name}_front.png").write_bytes((work / f"out-{target}" / "front.png").read_bytes())
    print_table(rows, COLUMNS)
    write_json(args.name, {"environment": environment(), "model": "alexnet-mini (64 px, bundled MSL subset)",
                           "epochs": args.epochs, "finetune_epochs": args.finetune_epochs, "note": args.note,
                           "criteria": args.criteria or "all", "rows": rows,
                           "runs": runs})
    lines = [f"# Compress to a target (alexnet-mini, {args.finetune_epochs} fine-tuning epochs)", "",
             f"Criteria: {args.criteria or 'all'}. {args.note}", "",
             "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(str(r[c]) for c in COLUMNS) + " |" for r in rows]
    lines += ["", ("search_s: wall seconds of the whole compress_dirs call (search, finalists, export, parity, "
              "fit, plot) on a shared 2-core machine under load; points: (criterion, per-layer percent) points "
              "scored on cached features; costed: structures exported and fit-analysed; bounded: candidates "
              "ruled out by the cost bound."), "",
              ("AlexNet-227 was not run: not within this session's time on the shared machine. The search scores "
              "heads on cached features, so its cost there is one conv pass per split plus one export per "
              "costed structure (AlexNet-227's export is larger, ~230 MB of fp32 weights).")]
    (OUT_DIR / f"{args.name}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
