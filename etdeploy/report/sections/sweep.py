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


def ci_text(ci: tuple[float, float] | None) -> str:
    """``"0.8812-0.9034"``, or empty for a sweep written before intervals were recorded."""
    return "" if ci is None else f"{ci[0]:.4f}-{ci[1]:.4f}"


def winner_text(w: SweepRun, main: list[str]) -> Raw:
    """Which schedule has the largest area, by how much over random, and whether the intervals separate them."""
    if "random" not in main or len(main) < 2:
        return Raw("")
    best = max((n for n in main if n != "random"), key=lambda n: w.curves[n].auc)
    b, r = w.curves[best], w.curves["random"]
    if b.auc_ci95 is None or r.auc_ci95 is None:
        return markup("<p>Largest area besides random: <b>{}</b> ({:.4f}; random {:.4f}).</p>", best, b.auc, r.auc)
    apart = b.auc_ci95[0] > r.auc_ci95[1] or b.auc_ci95[1] < r.auc_ci95[0]
    verdict = ("the 95 % intervals do not overlap" if apart else
               "the 95 % intervals overlap: the difference is within what the number of images can resolve")
    seeds = f" (mean of {len(r.band.seeds)} seeds)" if r.band is not None else ""
    return markup("<p>Largest area besides random: <b>{}</b>, {:.4f} [{:.4f}, {:.4f}] vs random{} {:.4f} [{:.4f}, "
                  "{:.4f}], difference {:+.4f}; {}.</p>", best, b.auc, *b.auc_ci95, seeds, r.auc, *r.auc_ci95,
                  b.auc - r.auc, verdict)


def section(record: RunRecord) -> Section | None:
    w = record.stage("sweep", SweepRun)
    if w is None:
        return None
    main = list(w.main_schedules)
    rows = [[n, w.curves[n].auc, ci_text(w.curves[n].auc_ci95), *w.curves[n].auc_per_class] for n in main]
    parts = [markup("<p>Accuracy on the {} split ({} images) while masking the neurons of <b>{}</b> in schedule "
                    "order, without retraining. Area under each curve on x = fraction masked (higher = more "
                    "robust), with its 95 % bootstrap interval over the images. Expected: bottom-first above "
                    "random above top-first.</p>", w.split, w.n_images, w.layer),
             winner_text(w, main),
             table(["schedule", "area", "area 95 % CI"] + [f"area {c}" for c in w.classes], rows),
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
