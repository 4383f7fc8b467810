"""Options of the whole-split forms of ``explain`` and ``evaluate`` (:mod:`etdeploy.archive`)."""

from __future__ import annotations

import click

from etdeploy.cli.options import open_data_from_options


def archive_options(func):
    """``--limit``, ``--classes``, ``--workers``, ``--ray-address`` (whole-split commands, etdeploy.archive)."""
    func = click.option("--ray-address", default=None,
                        help="Run on the Ray cluster at this address (e.g. 10.0.0.1:6379 or 'auto'; see README).")(func)
    func = click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
                        help="Workers: 1 = this process; more = Ray actors (a local Ray unless --ray-address; "
                             "needs pip install 'etdeploy[ray]').")(func)
    func = click.option("--classes", "class_filter", default=None,
                        help="Only images of these classes (comma-separated names).")(func)
    return click.option("--limit", type=click.IntRange(min=1), default=None,
                        help="At most this many images (the split's first, in data set order).")(func)


def open_archive_images(model_dir, data, grouping, recipe, cap, data_seed, allow_other_data, split, limit,
                        class_filter):
    """``(images, dataset, described)`` of a whole-split command: the data (the model's unless told,
    checked against the model when one is given), the selected images and what to record of them."""
    from etdeploy.archive import select_images

    dataset = open_data_from_options(data, grouping, recipe, cap, data_seed, model_dir=model_dir)
    if model_dir is not None:
        from etdeploy.data.compat import check_compatible
        from etdeploy.models import load_model

        check_compatible(load_model(model_dir), dataset, model_dir, split=split, allow_other_data=allow_other_data)
    wanted = tuple(c.strip() for c in class_filter.split(",") if c.strip()) if class_filter else ()
    images = select_images(dataset, split, limit=limit, classes=wanted)
    described = {**dataset.provenance(), "split": split, "limit": limit, "class_filter": list(wanted)}
    described.pop("counts", None)
    return images, dataset, described
