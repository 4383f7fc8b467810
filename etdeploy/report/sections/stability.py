"""Explanation stability section (EASA IMP-06; docs/method.md §12.3): occlusion maps of the original and the
pruned model on the same images, their SSIM, and the maps side by side on a shared colour scale."""

from __future__ import annotations

from etdeploy.assurance.stability import StabilityRun
from etdeploy.report.html import Raw, card, img, join, markup, table
from etdeploy.report.record import RunRecord, Section


def _data(record: RunRecord) -> dict | None:
    return record.stages.get("stability")


def section(record: RunRecord) -> Section | None:
    data = _data(record)
    if data is None:
        return None
    if "skipped" in data:
        return Section("stability", "Explanation stability", markup("<p>Not compared: {}</p>", data["skipped"]))
    run = record.stage("stability", StabilityRun)
    rows = []
    for image in run.images:
        truth = run.classes[image.true_class] if image.true_class is not None else "?"
        rows.append([image.file, truth, image.name, run.classes[image.original_predicted],
                     run.classes[image.pruned_predicted],
                     markup("[{:.3f}, {:.3f}]", *image.original_range), markup("[{:.3f}, {:.3f}]", *image.pruned_range),
                     "yes" if image.flat else "", image.ssim if image.ssim is not None else (image.note or "n/a")])
    summary = (markup("<p>SSIM over {} images: min <b>{:.3f}</b>, median <b>{:.3f}</b> (1 = the same map).</p>",
                      sum(1 for i in run.images if i.ssim is not None), run.min_ssim, run.median_ssim)
               if run.min_ssim is not None else Raw("<p>No image has a defined SSIM.</p>"))
    figure = (join([img(record.asset(f"stability/{run.figure}"), "original and pruned maps side by side"),
                    Raw("<p class='muted'>Each row: the original's map (left) and the pruned model's (right) on one "
                        "colour scale, with its colour bar.</p>")])
              if run.figure else Raw(""))
    body = join([
        markup("<p>Does compression change what the model looks at? Exact occlusion maps ({} of the mapped class, "
               "patch {}, stride {}) of the original export <code>{}</code> and the pruned export <code>{}</code> on "
               "the images the explanations section shows; SSIM of the pruned map against the original's, with the "
               "original's value range as data range (as the approximate-mode tuner scores maps). <i>flat</i>: a map "
               "whose range is below 0.05, whose SSIM compares near-noise.</p>",
               run.map_kind, run.patch, run.stride, run.original.file, run.pruned.file),
        summary,
        table(["image", "true", "mapped class", "original predicts", "pruned predicts", "original range",
               "pruned range", "flat", "SSIM"], rows),
        figure])
    return Section("stability", "Explanation stability", body)


def cards(record: RunRecord) -> list[Raw]:
    data = _data(record)
    if data is None or "skipped" in data:
        return []
    run = record.stage("stability", StabilityRun)
    if run.min_ssim is None:
        return []
    return [card("explanation SSIM (min)", f"{run.min_ssim:.3f}", f" median {run.median_ssim:.3f}")]
