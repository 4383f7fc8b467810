"""The train stage: train the configured model (or load `model.load`) and evaluate it on every split."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from etdeploy.fileio import atomic_write_json
from etdeploy.pipeline.context import RunContext
from etdeploy.vocab import SPLITS


def run_train(ctx: RunContext, tmp: Path) -> dict[str, Any]:
    from etdeploy.data import check_compatible
    from etdeploy.data.compat import OtherDataError
    from etdeploy.errors import ConfigError
    from etdeploy.models import count_parameters, load_model, save_model
    from etdeploy.training import evaluate_model, train_model, training_summary

    m = ctx.config.model
    ds = ctx.dataset()
    if m.load:
        model = load_model(m.load)
        try:
            check_compatible(model, ds, m.load)
        except OtherDataError as exc:  # the run's data are [data]: the loaded model must have been trained on them
            keys = ", ".join(f"[data] {'source' if name == 'data' else name}" for name, _, _ in exc.differences)
            raise ConfigError(f"[model] load: {exc.reason}; set {keys} to the model's (the data it was trained on)",
                              m.load) from exc
        evals = {s: evaluate_model(model, ds, s, images=ctx.split_images(s, model.spec.input_size))
                 for s in SPLITS}
        metrics = {"arch": model.spec.arch, "parameters": count_parameters(model), "classes": list(ds.classes),
                   "loaded_from": str(m.load), "evaluation": evals}
        save_model(model, tmp / "model")
        atomic_write_json(tmp / "model" / "metrics.json", metrics)
    else:
        model, metrics = train_model(m.arch, ds, epochs=m.epochs, seed=m.seed, lr=m.lr, batch_size=m.batch_size,
                                     input_size=m.input_size, out=tmp / "model", progress=ctx.progress)
    return training_summary(tmp / "model")


def describe_train(s: dict[str, Any]) -> str:
    a = s["accuracy"]
    return (f"{s['arch']} {s['parameters']:,} parameters, train/val/test accuracy "
            f"{a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")

