"""The train stage: train the configured model (or load `model.load`, or import `model.import`) and evaluate
it on every split. Whatever the route, the stage writes ``model/`` (spec, weights, ``metrics.json``) and
returns :func:`~etdeploy.training.training_summary` of it, so the later stages read it alike; an import's
summary adds ``imported`` (origin and the import's own original-vs-imported logit check) and, for ONNX,
``interface``."""

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
    from etdeploy.export.parity import ORIGINAL_FILE
    from etdeploy.fileio import atomic_write_bytes
    from etdeploy.models import count_parameters, load_model, save_model
    from etdeploy.training import evaluate_model, train_model, training_summary

    m = ctx.config.model
    ds = ctx.dataset()
    if m.import_:
        import_model(m, ds, tmp / "model", progress=ctx.progress)
    elif m.load:
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
        if (Path(m.load) / ORIGINAL_FILE).is_file():  # an ONNX import: keep the user's file for parity
            atomic_write_bytes(tmp / "model" / ORIGINAL_FILE, (Path(m.load) / ORIGINAL_FILE).read_bytes())
    else:
        model, metrics = train_model(m.arch, ds, epochs=m.epochs, seed=m.seed, lr=m.lr, batch_size=m.batch_size,
                                     input_size=m.input_size, out=tmp / "model", progress=ctx.progress)
    return training_summary(tmp / "model")


def import_model(m, dataset, out: Path, *, progress: bool) -> None:
    """``[model] import``: an ``.onnx`` file through :func:`~etdeploy.importing.import_onnx_model`, any
    other file as the weights of ``[model] arch`` through :func:`~etdeploy.importing.import_torch_model`;
    normalisation ``[model] mean``/``std`` or ``scale``; classes: the run's data set (evaluated on it)."""
    from etdeploy.errors import ConfigError
    from etdeploy.importing import import_onnx_model, import_torch_model

    source = Path(m.import_)
    if not source.is_file():
        raise ConfigError("[model] import: file does not exist", source)
    norm = {"mean": m.mean, "std": m.std, "scale": m.scale}
    if source.suffix.lower() == ".onnx":
        import_onnx_model(source, out, dataset=dataset, progress=progress, **norm)
    else:
        import_torch_model(m.arch, source, out, dataset=dataset, input_size=m.input_size, progress=progress, **norm)


def describe_train(s: dict[str, Any]) -> str:
    a = s["accuracy"]
    origin = s.get("imported")
    what = "" if origin is None else f" imported from {origin['file']} ({origin['route']}),"
    if a is None:
        return f"{s['arch']} {s['parameters']:,} parameters,{what} not evaluated"
    return (f"{s['arch']} {s['parameters']:,} parameters,{what} train/val/test accuracy "
            f"{a['train']:.3f}/{a['val']:.3f}/{a['test']:.3f}")

