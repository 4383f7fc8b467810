"""Archive scale: explanations and evaluation of whole splits, in one process or on Ray (docs/method.md §14).

The use cases :func:`explain_archive` and :func:`evaluate_archive` take a selection of images
(:func:`select_images`) and a number of workers; with one worker and no Ray address they run in
this process, otherwise on Ray Data with an actor pool (:mod:`etdeploy.archive.backend`). Their
results do not depend on the number of workers.
"""

from etdeploy.archive.images import ArchiveImage, select_images

__all__ = ["ArchiveImage", "evaluate_archive", "explain_archive", "read_archive", "select_images"]


def __getattr__(name: str):
    if name in ("explain_archive", "read_archive"):
        from etdeploy.archive import explain

        return getattr(explain, name)
    if name == "evaluate_archive":
        from etdeploy.archive.evaluate import evaluate_archive

        return evaluate_archive
    raise AttributeError(name)
