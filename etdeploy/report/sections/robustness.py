"""Robustness section (EASA IMP-09/10; docs/method.md §12.2): accuracy of each form of the model under
rover-camera perturbations at graded severities, with Wilson 95 % intervals, as a table and a plot."""

from __future__ import annotations

from etdeploy.assurance.robustness import RobustnessRun
from etdeploy.report.html import Raw, card, figure_png, img, join, markup, table
from etdeploy.report.record import RunRecord, Section

MODEL_COLOURS = {"original": "tab:blue", "sliced": "tab:orange", "int8": "tab:green"}


def robustness_plot(run: RobustnessRun) -> bytes:
    """Accuracy vs severity, one panel per perturbation, one line per model with its Wilson band; one legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(run.perturbations)
    cols = min(3, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.4 * rows), squeeze=False, sharey=True)
    for ax, p in zip(axes.flat, run.perturbations):
        for m in run.models:
            cells = [run.cell(p.name, s, m.name) for s in run.severities]
            colour = MODEL_COLOURS.get(m.name)
            ax.plot(run.severities, [c.accuracy for c in cells], marker="o", ms=3, color=colour, label=m.name)
            ax.fill_between(run.severities, [c.low for c in cells], [c.high for c in cells], color=colour, alpha=0.15)
        ax.set_title(p.name.replace("_", " "), fontsize=9)
        ax.set_xticks(run.severities)
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.set_axis_off()
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy")
    for ax in axes[-1, :]:
        ax.set_xlabel("severity (0 = clean)")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8, frameon=False,
               bbox_to_anchor=(0.5, -0.02))
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return figure_png(fig)


def _data(record: RunRecord) -> dict | None:
    return record.stages.get("robustness")


def section(record: RunRecord) -> Section | None:
    data = _data(record)
    if data is None:
        return None
    if "skipped" in data:
        return Section("robustness", "Robustness", markup("<p>Not evaluated: {}</p>", data["skipped"]))
    run = record.stage("robustness", RobustnessRun)
    names = [m.name for m in run.models]
    rows = []
    for p in run.perturbations:
        for s, setting in zip(run.severities, p.settings):
            row: list = [p.name if s == 0 else "", s, setting]
            for name in names:
                c = run.cell(p.name, s, name)
                row.append(markup("{:.3f} [{:.3f}, {:.3f}]", c.accuracy, c.low, c.high))
                row.append(c.changed)
            rows.append(row)
    header = ["perturbation", "severity", "setting"]
    for name in names:
        header += [f"{name} accuracy [95 % CI]", f"{name} changed"]
    models = join([markup("<li><b>{}</b>: {} <code>{}</code> (sha256 <code>{}…</code>)</li>", m.name, m.runtime,
                          m.file, m.sha256[:16]) for m in run.models])
    missing = join([markup("<p>Not evaluated: <b>{}</b>: {}.</p>", m.name, m.reason) for m in run.missing])
    cap = markup(" (class-stratified, at most {})", run.max_images) if run.max_images is not None else ""
    body = join([
        markup("<p>Accuracy under perturbations typical of rover cameras (sensor noise, over-exposure, defocus and "
               "motion blur, JPEG re-compression, low contrast from dust), each at severities {} (0 = the clean "
               "image, bit for bit), on {} {} images{}; seed {}. Intervals: Wilson {:.0%}. <i>changed</i>: images "
               "whose predicted class differs from the same model's prediction on the clean image.</p>",
               ", ".join(str(s) for s in run.severities), run.n, run.split, cap, run.seed, run.confidence),
        Raw("<ul>"), models, Raw("</ul>"), missing,
        img(robustness_plot(run), "accuracy vs severity per perturbation"),
        table(header, rows, left=3)])
    return Section("robustness", "Robustness", body)


def cards(record: RunRecord) -> list[Raw]:
    data = _data(record)
    if data is None or "skipped" in data:
        return []
    run = record.stage("robustness", RobustnessRun)
    deployed = "int8" if "int8" in [m.name for m in run.models] else run.models[-1].name
    w = run.worst(deployed)
    return [card(f"robustness ({deployed}, worst)", f"{w.accuracy:.3f}",
                 f" {w.perturbation} {w.severity}, clean {run.clean(deployed).accuracy:.3f}")]
