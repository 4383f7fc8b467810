"""Rebuild the bundled MSL subset shipped in ``etdeploy/data/bundled/msl-paper5``.

    python -m etdeploy.data.make_bundled --msl ../shared/datasets/msl-v1 --out etdeploy/data/bundled/msl-paper5

Seeded: picks ``--per-class`` images for each ``paper5`` class from the union of the official splits,
downsamples them to ``--size`` pixels (JPEG quality 90) and writes them in the MSL label-file format
(original class ids, official split membership kept) with the citation.
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

from etdeploy.data.sources import (
    MSL_CITATION,
    MSL_LABEL_FILES,
    MSL_SYNSET_FILE,
    SPLITS,
    group_class,
    read_label_file,
    read_synsets,
)


def build(msl: Path, out: Path, per_class: int, size: int, seed: int) -> None:
    from PIL import Image

    synsets = read_synsets(msl / MSL_SYNSET_FILE)
    ids = {name: i for i, name in synsets.items()}
    pool: dict[str, list[tuple[str, Path, str]]] = {}
    for split in SPLITS:
        for path, cls in read_label_file(msl / MSL_LABEL_FILES[split], msl, synsets):
            group = group_class(cls, "paper5")
            if group is not None:
                pool.setdefault(group, []).append((split, path, cls))
    rng = random.Random(seed)
    chosen: list[tuple[str, Path, str]] = []
    for group in sorted(pool):
        items = sorted(pool[group], key=lambda t: t[1].name)
        chosen += rng.sample(items, min(per_class, len(items)))
    (out / "calibrated").mkdir(parents=True, exist_ok=False)
    lines: dict[str, list[str]] = {s: [] for s in SPLITS}
    for split, path, cls in sorted(chosen, key=lambda t: t[1].name):
        with Image.open(path) as im:
            im.convert("RGB").resize((size, size), Image.BILINEAR).save(
                out / "calibrated" / path.name, "JPEG", quality=90)
        lines[split].append(f"calibrated/{path.name} {ids[cls]}")
    for split in SPLITS:
        (out / MSL_LABEL_FILES[split]).write_text("\n".join(lines[split]) + "\n")
    (out / MSL_SYNSET_FILE).write_text("".join(f"{i}\t{n}\n" for i, n in sorted(synsets.items())))
    (out / "CITATION.txt").write_text(
        "Bundled subset of the MSL Curiosity rover labelled image set (MSL v1).\n"
        f"{len(chosen)} images, {per_class} per 'paper5' class (seed {seed}), downsampled to {size}x{size} "
        "JPEG (quality 90);\nlabel files keep the original class ids and the official sol-based split.\n"
        f"Cite: {MSL_CITATION}\nAuthors: Alice Stanboli and Kiri L. Wagstaff (JPL).\n"
        "Rebuild: python -m etdeploy.data.make_bundled --msl ../shared/datasets/msl-v1 --out <dir>\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--msl", type=Path, required=True)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--per-class", type=int, default=120)
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    build(args.msl, args.out, args.per_class, args.size, args.seed)


if __name__ == "__main__":
    main()
