"""Sweep section: accuracy vs neurons masked per schedule, per-class EA pruning curves (from ``SweepRun``)."""

from __future__ import annotations

from etdeploy.pruning.sweep_dirs import SweepRun
from etdeploy.report import plots
from etdeploy.report.html import Raw, img, join, markup, table
from etdeploy.report.record import RunRecord, Section


def class_of(schedule: str, classes: tuple[str, ...]) -> str:
    """The class a ``class-ea:<index or name>`` schedule prunes by."""
    arg = schedule.partition(":")[2]
    return classes[int(arg)] if arg.isdigit() and int(arg) < len(classes) else arg


def section(record: RunRecord) -> Section | None:
    w = record.stage("sweep", SweepRun)
    if w is None:
        return None
    main = list(w.main_schedules)
    rows = [[n, w.curves[n].auc, *w.curves[n].auc_per_class] for n in main]
    parts = [markup("<p>Accuracy on the {} split ({} images) while masking the neurons of <b>{}</b> in schedule "
                    "order, without retraining. Area under each curve on x = fraction masked (higher = more "
                    "robust). Expected: bottom-first above random above top-first.</p>", w.split, w.n_images,
                    w.layer),
             table(["schedule", "area"] + [f"area {c}" for c in w.classes], rows),
             img(plots.sweep_curves({n: w.curves[n].to_dict() for n in main}, w.width, w.layer, main,
                                    "accuracy vs neurons masked"), "sweep")]
    if w.class_schedules:
        parts.append(Raw("<h3>Per-class EA pruning (paper Fig. 11): masking the neurons with the highest "
                         "E<sup>k</sup><sub>kk</sub> of one class k</h3><div class='grid'>"))
        for name in w.class_schedules:
            parts.append(img(plots.class_ea_curves(w.curves[name].to_dict(), list(w.classes), w.width, w.layer,
                                                   f"pruning by EA of '{class_of(name, w.classes)}'"), name))
        parts.append(Raw("</div>"))
    return Section("sweep", "Pruning sweeps", join(parts))
