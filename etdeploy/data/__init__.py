"""Data: MSL and ImageFolder readers, groupings, split recipes, the bundled subset, image decoding."""

from etdeploy.data.compat import check_compatible
from etdeploy.data.sources import (
    GROUPINGS,
    MSL_CITATION,
    PAPER5_CLASSES,
    SPLIT_RECIPES,
    SPLITS,
    DataSet,
    Sample,
    bundled_root,
    load_dataset,
)

__all__ = ["GROUPINGS", "MSL_CITATION", "PAPER5_CLASSES", "SPLITS", "SPLIT_RECIPES", "DataSet", "Sample",
           "bundled_root", "check_compatible", "load_dataset"]
