"""The evaluate stage: every form of the model (original, pruned, sliced, ONNX, int8, C) on the same images
of the ``[evaluate] split`` (:func:`etdeploy.assurance.forms.evaluate_forms`; docs/method.md §12.1); the
summary is ``forms.json`` (:class:`~etdeploy.assurance.forms.FormsRun`), plus ``forms.csv`` (accuracy and 95 %
intervals per form), ``per_class.csv`` (the same per form and class) and ``mcnemar.csv`` (the paired tests).
The C form runs only with ``[evaluate] c_model = true`` (about 10 s on the demo model; :data:`C_OFF`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json, atomic_write_text, csv_text
from etdeploy.pipeline.context import RunContext

C_OFF = ("off by default ([evaluate] c_model = true turns it on): generating and compiling the C of the demo "
         "model costs about 10 s (4.5 s C generation, 4.5 s gcc -O2 of 6.5 MB of weight arrays); the package stage "
         "checks the same C against ONNX Runtime on its golden vectors")
INTERVAL_COLUMNS = ["n", "correct", "accuracy", "wilson_low", "wilson_high", "clopper_pearson_low",
                    "clopper_pearson_high"]


def forms_tables(run: Any) -> dict[str, str]:
    """The CSV files of a :class:`~etdeploy.assurance.forms.FormsRun`, by file name."""
    forms = [[f.name, f.kind, *(getattr(f, k) for k in ("n", "correct", "accuracy", "ci_low", "ci_high", "cp_low",
                                                          "cp_high")), f.changed_vs_original, f.predictions_sha256]
             for f in run.ordered()]
    per_class = [[f.name, c.class_, c.n, c.correct, c.accuracy, c.ci_low, c.ci_high, c.cp_low, c.cp_high]
                 for f in run.ordered() for c in f.per_class]
    pairs = [[p.first, p.second, p.relation, p.n, p.both_correct, p.b, p.c, p.both_wrong, p.changed, p.p_value,
              p.mid_p] for p in run.pairs]
    return {
        "forms.csv": csv_text(["form", "kind", *INTERVAL_COLUMNS, "changed_vs_original", "predictions_sha256"],
                              forms),
        "per_class.csv": csv_text(["form", "class", *INTERVAL_COLUMNS], per_class),
        "mcnemar.csv": csv_text(["first", "second", "relation", "n", "both_correct", "b_first_only_correct",
                                 "c_second_only_correct", "both_wrong", "changed_labels", "p_exact", "p_mid"], pairs),
    }


def run_evaluate_stage(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    import dataclasses

    from etdeploy.assurance.forms import FORMS_FILE, evaluate_forms
    from etdeploy.export import ExportSet
    from etdeploy.pipeline.stages.quantize import INT8_FILE

    split = ctx.config.evaluate.split
    original = ctx.stage_dir("train") / "model"
    size = ExportSet.from_dict(ctx.summary("export")).exports["original"].model.input_size
    images = ctx.split_images(split, size)  # decoded once per run (parity and explain read the same split)
    run = evaluate_forms(original, dataset=ctx.dataset(), split=split, pruned=ctx.pruned_dir() / "masked",
                         sliced=ctx.pruned_dir() / "sliced", export=ctx.stage_dir("export") / "sliced",
                         int8=ctx.stage_dir("quantize") / INT8_FILE, c_model=ctx.config.evaluate.c_model, images=images,
                         progress=ctx.progress)
    if not ctx.config.evaluate.c_model:
        run = dataclasses.replace(run, skipped={**run.skipped, "c": C_OFF})
    atomic_write_json(tmp / FORMS_FILE, run.to_dict())
    for name, text in forms_tables(run).items():
        atomic_write_text(tmp / name, text)
    return run.to_dict()


def describe_evaluate(s: dict[str, Any]) -> str:
    from etdeploy.assurance.forms import FormsRun

    run = FormsRun.from_dict(s)
    forms = ", ".join(f"{f.name} {f.accuracy:.3f}" for f in run.ordered())
    return f"{len(run.forms)} forms on {run.n} {run.split} images: {forms}" + (
        f" ({len(run.skipped)} not run)" if run.skipped else "")
