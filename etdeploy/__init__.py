"""etdeploy: rank, prune, slice, export, explain and size image classifiers for flight processors."""

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "load_model", "save_model"]


def __getattr__(name: str):
    # Lazy so that `import etdeploy` (and `etdeploy --help`) does not import torch.
    if name in ("load_model", "save_model", "build_model"):
        from etdeploy import models

        return getattr(models, name)
    raise AttributeError(f"module 'etdeploy' has no attribute {name!r}")
