"""Seconds per training epoch for alexnet-mini (64 px) and alexnet-227 on the bundled MSL subset.

    python benchmarks/train.py [--images N]

Each model trains one epoch (Adam 1e-3, batch 32, hflip) on N training images (default: all 480 for
alexnet-mini, 96 for alexnet-227, scaled to the 480-image epoch and to the paper-size 1200-image epoch).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import environment, print_table, write_json


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=None, help="training images per model (default per model)")
    args = parser.parse_args()

    from etdeploy.data import load_dataset
    from etdeploy.data.images import channel_mean_std, load_split
    from etdeploy.models import build_model, count_parameters
    from etdeploy.training import TrainConfig, train

    ds = load_dataset("bundled")
    rows = []
    for arch, default_n in (("alexnet-mini", 480), ("alexnet", 96)):
        model = build_model(arch, 5, seed=0)
        size = model.spec.input_size
        n = args.images or default_n
        train_split = load_split(ds.split("train")[:n], size)
        empty = dataclasses.replace(train_split, images=train_split.images[:0], labels=train_split.labels[:0])
        mean, std = channel_mean_std(train_split.images)
        start = time.perf_counter()
        train(model, train_split, empty, TrainConfig(epochs=1, seed=0), mean=mean, std=std, progress=False)
        seconds = time.perf_counter() - start
        per_image = seconds / n
        rows.append({"arch": arch, "input": size, "parameters": count_parameters(model), "images_timed": n,
                     "seconds": round(seconds, 3), "s_per_epoch_480": round(per_image * 480, 2),
                     "s_per_epoch_1200": round(per_image * 1200, 2)})
    print_table(rows, ["arch", "input", "parameters", "images_timed", "seconds", "s_per_epoch_480",
                       "s_per_epoch_1200"])
    write_json("train", {"rows": rows, "environment": environment(),
                         "note": "1200 = the paper recipe's training split (300/class x 5 x 0.8)"})


if __name__ == "__main__":
    main()
