"""Explanations section: occlusion maps with captions, approximate-mode tuning."""

from __future__ import annotations

from etdeploy.occlusion.explain import ExplainRun
from etdeploy.report.html import Raw, img, join, markup
from etdeploy.report.record import RunRecord, Section

MAP_KIND_TEXT = {
    "prob": ("P(class)", "the probability of the mapped class", "low (blue)"),
    "drop": ("drop of P(class)", "the drop of the mapped class's probability", "high (red)"),
    "logit": ("logit(class)", "the logit (pre-softmax score) of the mapped class", "low (blue)"),
    "logprob": ("log P(class)", "the log-probability of the mapped class", "low (blue)"),
}


def _class_name(run: ExplainRun, index: int) -> str:
    return run.classes[index] if 0 <= index < len(run.classes) else f"class {index}"


def _shared_scale(record: RunRecord, run: ExplainRun, short: str) -> Raw:
    """Every map on one colour scale with one colour bar (from the maps' ``.npy`` files in the record)."""
    import io

    import numpy as np

    from etdeploy.report import plots

    maps = []
    index = {id(image): i for i, image in enumerate(run.images, 1)}
    for image, m in run.all_maps():
        data = record.assets.get(f"explain/{m.npy}")
        if data is None:
            return Raw("<p class='muted'>The maps' arrays are not in the record: no shared-scale figure.</p>")
        maps.append((f"image {index[id(image)]}: {m.name}", np.load(io.BytesIO(data), allow_pickle=False)))
    if not maps:
        return Raw("")
    lo = min(float(a.min()) for _, a in maps)
    hi = max(float(a.max()) for _, a in maps)
    return join([markup("<p>All {} maps on one colour scale ({} from {:.3g} to {:.3g}; images numbered in the order "
                        "of the overlays below):</p>", len(maps), short, lo, hi),
                 img(plots.shared_scale_maps(maps, short), "occlusion maps on a shared colour scale")])


def section(record: RunRecord) -> Section | None:
    run = record.stage("explain", ExplainRun)
    if run is None:
        return None
    short, long, important = MAP_KIND_TEXT[run.map_kind]
    figs = []
    for image, m in run.all_maps():
        png = record.asset(f"explain/{m.png}")
        truth = markup("true <b>{}</b>, ", _class_name(run, image.true_class)) if image.true_class is not None else ""
        kind = markup("{}: ", image.kind) if image.kind else ""
        ssim = markup(", SSIM vs exact {:.3f}", m.ssim_vs_exact) if m.ssim_vs_exact is not None else ""
        speed = markup(", modelled speedup {:.2f}×", image.modelled_speedup) if image.modelled_speedup else ""
        flat = Raw(" (flat)") if m.flat else ""
        figs.append(markup("<figure>{}<figcaption>{}{}predicted <b>{}</b> (p={:.3f}); map of {} for <b>{}</b> in "
                           "[{:.3f}, {:.3f}]{}{}{}</figcaption></figure>", img(png, image.file), kind, truth,
                           _class_name(run, image.predicted), image.probability, short, m.name, m.min, m.max, flat, speed,
                           ssim))
    tuning = Raw("")
    if run.tuning is not None:
        t = run.tuning
        margin = markup(" (tuning maps asked for {:.2f})", t.required_ssim) if t.margin else ""
        tuning = markup("<p>Approximate mode tuned to SSIM ≥ {}{}: τ = {}, r_drill = {}, stage-1 stride {}; achieved "
                        "min SSIM {:.3f}, modelled speedup {:.2f}×; flat maps left out of tuning: {}.</p>",
                        t.target_ssim, margin, t.tau, t.r_drill, t.stage1_stride, t.min_ssim, t.modelled_speedup,
                        len(t.flat_images))
        # what the SSIM was measured on, and why the tuning is weak evidence, where it is
        scored = markup("<p>Tuning maps scored on <b>{}</b> maps{}.</p>", t.map_kind,
                        markup(" ({})", t.fallback) if t.fallback else "")
        weak = markup("<p><span class='bad'>Warning:</span> {}</p>", t.warning) if t.warning else Raw("")
        tuning = join([tuning, scored, weak])
    patch = "a gray (data-set mean) patch" if run.patch_value == 0 else \
        markup("a patch of value {} (normalised space)", run.patch_value)
    body = join([_shared_scale(record, run, short),
                 markup("<p>Occlusion maps (KRYPTON incremental executor on ONNX Runtime, mode <b>{}</b>, patch {}, "
                        "stride {}) of <code>{}</code>: {} when {} covers each position; {} = the region the "
                        "prediction depends on. Modelled speedup = naive MACs / executed MACs.</p>",
                        run.mode, run.patch, run.stride, run.onnx.file, long, patch, important),
                 tuning, Raw("<p>Each overlay below has its own colour bar (its map's range); the figure above puts "
                             "every map on one scale.</p><div class='grid'>"), join(figs), Raw("</div>")])
    return Section("explain", "Occlusion explanations", body)
