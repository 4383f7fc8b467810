"""Readers for labelled image sets: the MSL label-file format and plain ImageFolder trees,
class groupings (``msl25``, ``paper5``) and split recipes (``sol``, ``paper``).

MSL format (Wagstaff et al. 2018, DOI 10.5281/zenodo.1049137): a root with
``{train,val,test}-calibrated-shuffled.txt`` (lines ``calibrated/NAME.JPG <class-id>``) and
``msl_synset_words-indexed.txt`` (lines ``<id> <name>``).
ImageFolder: ``root/<class>/*.jpg|png`` (one class per folder), or ``root/{train,val,test}/<class>/``.
"""

from __future__ import annotations

import random
import warnings
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from etdeploy.errors import DataError
from etdeploy.records import Record
from etdeploy.vocab import GROUPINGS, SPLIT_RECIPES, SPLITS

MSL_LABEL_FILES = {s: f"{s}-calibrated-shuffled.txt" for s in SPLITS}
MSL_SYNSET_FILE = "msl_synset_words-indexed.txt"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MSL_CITATION = ("Stanboli, A. and Wagstaff, K. L. Mars surface image (Curiosity rover) labeled data set, "
                "DOI 10.5281/zenodo.1049137; Wagstaff et al., Deep Mars: CNN Classification of Mars "
                "Imagery for the PDS Imaging Atlas, IAAI 2018.")

PAPER5_CLASSES = ("close-up rock", "distant landscape", "drill hole", "calibration target", "other rover part")
_PAPER5_EXPLICIT = {
    "ground": "close-up rock",
    "horizon": "distant landscape",
    "drill holes": "drill hole",
    "apxs cal target": "calibration target",
    "chemcam cal target": "calibration target",
    "mahli cal target": "calibration target",
    "mastcam cal target": "calibration target",
    "sun": None,  # the paper's "sun" class has no images in MSL v1; dropped
}


@dataclass(frozen=True)
class Sample:
    """One labelled image: path, grouped label index, and the source class name."""

    path: Path
    label: int
    source_class: str


@dataclass(frozen=True)
class DataIdentity(Record):
    """Which images make up a data set's splits: what a model's spec records of the data it was trained on.

    ``source``: as given (``"bundled"`` or a folder path as typed; ``None`` in specs written before
    etdeploy recorded it); ``root``: that folder resolved to an absolute path (``None`` for the
    bundled subset, whose location is the installed package's, and in old specs); ``name``: the data
    set's name (``"bundled"`` or the folder's name). Two identities without :meth:`differences` give
    the same train/val/test splits.
    """

    source: str | None
    root: str | None
    name: str
    grouping: str
    recipe: str
    seed: int
    cap: int | None = None

    @property
    def location(self) -> str | None:
        """``"bundled"``, the absolute root folder, or ``None`` when not recorded (old specs)."""
        if self.source == "bundled" or (self.source is None and self.root is None and self.name == "bundled"):
            return "bundled"
        return self.root

    @property
    def seed_matters(self) -> bool:
        """The seed draws the split of the ``paper`` recipe only (``sol`` is fixed by the data)."""
        return self.recipe == "paper"

    def differences(self, other: DataIdentity) -> tuple[tuple[str, str, str], ...]:
        """``(field, this value, other value)`` for each split-defining field in which ``other`` differs.

        Fields: ``data`` (location; the name when a location is not recorded), ``grouping``,
        ``recipe``, ``seed`` (``paper`` recipe only) and ``cap``.
        """
        out: list[tuple[str, str, str]] = []
        if self.location is not None and other.location is not None:
            if self.location != other.location:
                out.append(("data", self.describe_location(), other.describe_location()))
        elif self.name != other.name:
            out.append(("data", self.describe_location(), other.describe_location()))
        for key in ("grouping", "recipe"):
            if getattr(self, key) != getattr(other, key):
                out.append((key, str(getattr(self, key)), str(getattr(other, key))))
        if (self.seed_matters or other.seed_matters) and self.seed != other.seed:
            out.append(("seed", str(self.seed), str(other.seed)))
        if self.cap != other.cap:
            out.append(("cap", "none" if self.cap is None else str(self.cap),
                        "none" if other.cap is None else str(other.cap)))
        return tuple(out)

    def describe_location(self) -> str:
        location = self.location
        if location == "bundled":
            return "bundled"
        return location if location is not None else f"{self.name!r} (folder not recorded)"

    def open(self) -> DataSet:
        """Open these splits again (:class:`DataError` when the folder is gone or not recorded)."""
        location = self.location
        if location is None:
            raise DataError(f"the model's spec names its data {self.name!r} but not the folder it was read from")
        return load_dataset(location, grouping=self.grouping, recipe=self.recipe, seed=self.seed, cap=self.cap)

    @classmethod
    def from_recorded(cls, recorded: object) -> DataIdentity | None:
        """The identity in a spec's ``meta["trained_on"]``; ``None`` when there is none.

        Specs written before the source was recorded hold only the name, grouping, recipe, seed
        and cap: the location is then known for the bundled subset only.
        """
        if not isinstance(recorded, dict) or not {"name", "grouping", "recipe", "seed"} <= set(recorded):
            return None
        try:
            return cls(source=recorded.get("source"), root=recorded.get("root"), name=str(recorded["name"]),
                       grouping=str(recorded["grouping"]), recipe=str(recorded["recipe"]), seed=int(recorded["seed"]),
                       cap=None if recorded.get("cap") is None else int(recorded["cap"]))
        except (TypeError, ValueError):
            return None


@dataclass(frozen=True)
class DataSet:
    """A labelled image set split into train/val/test, with its class names and provenance."""

    name: str
    root: Path
    classes: tuple[str, ...]
    splits: dict[str, tuple[Sample, ...]]
    grouping: str
    recipe: str
    seed: int
    cap: int | None = None
    citation: str = ""
    warnings: tuple[str, ...] = field(default_factory=tuple)
    source: str = ""

    def split(self, name: str) -> tuple[Sample, ...]:
        if name not in self.splits:
            raise DataError(f"unknown split {name!r}; valid splits: {', '.join(self.splits)}", self.root)
        return self.splits[name]

    def counts(self) -> dict[str, list[int]]:
        out = {}
        for s, samples in self.splits.items():
            c = [0] * len(self.classes)
            for smp in samples:
                c[smp.label] += 1
            out[s] = c
        return out

    def describe(self) -> dict:
        return {"name": self.name, "root": str(self.root), "classes": list(self.classes),
                "grouping": self.grouping, "recipe": self.recipe, "seed": self.seed, "cap": self.cap,
                "counts": self.counts(), "citation": self.citation, "warnings": list(self.warnings)}

    def provenance(self) -> dict:
        """:meth:`describe` without the local root path."""
        d = self.describe()
        d.pop("root", None)
        return d

    def is_bundled(self) -> bool:
        return self.source == "bundled" or Path(self.root).resolve() == bundled_root().resolve()

    def identity(self) -> DataIdentity:
        """Which images make up the splits (:class:`DataIdentity`): source as given, resolved root."""
        bundled = self.is_bundled()
        return DataIdentity(source="bundled" if bundled else (self.source or str(self.root)),
                            root=None if bundled else str(Path(self.root).resolve()), name=self.name,
                            grouping=self.grouping, recipe=self.recipe, seed=self.seed, cap=self.cap)

    def training_record(self) -> dict:
        """What a model's spec records of the data it was trained on: :meth:`provenance` plus the
        :meth:`identity` (source as given and resolved root), so later commands can reopen it."""
        return {**self.provenance(), **self.identity().to_dict()}


def bundled_root() -> Path:
    return Path(str(resources.files("etdeploy.data") / "bundled" / "msl-paper5"))


def is_msl_root(root: Path) -> bool:
    return (root / MSL_SYNSET_FILE).exists() or any((root / f).exists() for f in MSL_LABEL_FILES.values())


def read_synsets(path: Path) -> dict[int, str]:
    if not path.is_file():
        raise DataError("class-name (synset) file is missing", path)
    names: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split(None, 1)
        if len(parts) != 2 or not parts[0].isdigit():
            raise DataError(f"line {lineno}: expected '<id> <name>', got {line.strip()!r}", path)
        names[int(parts[0])] = parts[1].strip()
    if not names:
        raise DataError("class-name (synset) file is empty", path)
    return names


def read_label_file(path: Path, root: Path, synsets: dict[int, str]) -> list[tuple[Path, str]]:
    """Lines ``<relative image path> <class-id>`` -> (absolute path, class name). Validates everything."""
    if not path.is_file():
        raise DataError("label file is missing", path)
    out: list[tuple[Path, str]] = []
    root_resolved = root.resolve()
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
            raise DataError(f"line {lineno}: expected '<image> <class-id>', got {line.strip()!r}", path)
        class_id = int(parts[1])
        if class_id not in synsets:
            raise DataError(f"line {lineno}: unknown class id {class_id} (known: 0-{max(synsets)})", path)
        image = (root / parts[0])
        if root_resolved not in image.resolve().parents:
            raise DataError(f"line {lineno}: image path {parts[0]!r} points outside the data set root", path)
        if not image.is_file():
            raise DataError(f"line {lineno}: image {parts[0]} does not exist", path)
        out.append((image, synsets[class_id]))
    if not out:
        raise DataError("label file is empty", path)
    return out


def group_class(name: str, grouping: str) -> str | None:
    if grouping in ("msl25", "folder"):
        return name
    if grouping == "paper5":
        if name in _PAPER5_EXPLICIT:
            return _PAPER5_EXPLICIT[name]
        return "other rover part"
    raise DataError(f"unknown grouping {grouping!r}; choose one of {', '.join(GROUPINGS)}")


def _scan_folder(root: Path) -> list[tuple[Path, str]]:
    items = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(class_dir.iterdir()):
            if image.is_file() and image.suffix.lower() in IMAGE_SUFFIXES:
                items.append((image, class_dir.name))
    return items


def _stratified(items: list[tuple[Path, str]], classes: tuple[str, ...], seed: int, cap: int | None,
                fractions: tuple[float, float] = (0.8, 0.1)) -> dict[str, list[tuple[Path, str]]]:
    by_class: dict[str, list[tuple[Path, str]]] = {c: [] for c in classes}
    for path, cls in items:
        by_class[cls].append((path, cls))
    rng = random.Random(seed)
    out: dict[str, list[tuple[Path, str]]] = {s: [] for s in SPLITS}
    for cls in classes:
        group = sorted(by_class[cls], key=lambda it: str(it[0]))
        rng.shuffle(group)
        if cap is not None:
            group = group[:cap]
        n = len(group)
        n_train = round(n * fractions[0])
        n_val = round(n * fractions[1])
        out["train"] += group[:n_train]
        out["val"] += group[n_train:n_train + n_val]
        out["test"] += group[n_train + n_val:]
    return out


def load_dataset(source: str | Path = "bundled", *, grouping: str = "paper5", recipe: str = "paper",
                 seed: int = 0, cap: int | None = None) -> DataSet:
    """Read a labelled image set.

    ``source``: ``"bundled"`` (the MSL subset shipped with etdeploy), an MSL-format root, or an
    ImageFolder root. ``grouping``: ``paper5`` or ``msl25`` for MSL data (ImageFolder uses its
    folders). ``recipe``: ``sol`` (the official MSL split, or ImageFolder ``train/val/test``
    subfolders) or ``paper`` (seeded stratified 80/10/10, optional per-class ``cap``).
    """
    if recipe not in SPLIT_RECIPES:
        raise DataError(f"unknown split recipe {recipe!r}; choose one of {', '.join(SPLIT_RECIPES)}")
    if cap is not None and cap < 1:
        raise DataError(f"per-class cap must be >= 1, got {cap}")
    name = "bundled" if str(source) == "bundled" else Path(source).name
    root = bundled_root() if str(source) == "bundled" else Path(source)
    if not root.is_dir():
        raise DataError("data set folder does not exist", root)

    citation = ""
    per_split: dict[str, list[tuple[Path, str]]]
    if is_msl_root(root):
        if grouping not in ("msl25", "paper5"):
            raise DataError(f"grouping {grouping!r} is not valid for MSL data; use paper5 or msl25", root)
        synsets = read_synsets(root / MSL_SYNSET_FILE)
        raw = {s: read_label_file(root / MSL_LABEL_FILES[s], root, synsets) for s in SPLITS}
        citation = MSL_CITATION
        if grouping == "paper5":
            classes = PAPER5_CLASSES
        else:
            classes = tuple(synsets[k] for k in sorted(synsets))
        if recipe == "sol":
            per_split = raw
        else:
            per_split = _group_then_split(raw, classes, grouping, seed, cap)
    else:
        if grouping not in ("folder", "paper5", "msl25"):
            raise DataError(f"unknown grouping {grouping!r}")
        grouping = "folder"
        if all((root / s).is_dir() for s in SPLITS) and recipe == "sol":
            per_split = {s: _scan_folder(root / s) for s in SPLITS}
        else:
            items = _scan_folder(root)
            if recipe == "sol":
                raise DataError("ImageFolder tree has no train/val/test subfolders; use the 'paper' split recipe",
                                root)
            classes_found = tuple(sorted({c for _, c in items}))
            if not items:
                raise DataError("no images found (expected root/<class>/*.jpg|png or an MSL label-file set)",
                                root)
            per_split = _stratified(items, classes_found, seed, cap)
        classes = tuple(sorted({c for items in per_split.values() for _, c in items}))
        if len(classes) < 2:
            raise DataError(f"need at least 2 classes, found {len(classes)}", root)
    return _finish(name, root, classes, per_split, grouping, recipe, seed, cap, citation,
                   source="bundled" if str(source) == "bundled" else str(source))


def _group_then_split(grouped: dict[str, list[tuple[Path, str]]], classes: tuple[str, ...], grouping: str,
                      seed: int, cap: int | None) -> dict[str, list[tuple[Path, str]]]:
    items = []
    seen = set()
    for s in SPLITS:
        for path, src in grouped[s]:
            if path in seen:
                continue
            seen.add(path)
            g = group_class(src, grouping)
            if g is not None:
                items.append((path, src))
    mapped = [(p, group_class(src, grouping)) for p, src in items]
    src_of = {p: src for p, src in items}
    split = _stratified(mapped, classes, seed, cap)
    return {s: [(p, src_of[p]) for p, _ in lst] for s, lst in split.items()}


def _finish(name: str, root: Path, classes: tuple[str, ...], per_split: dict[str, list[tuple[Path, str]]],
            grouping: str, recipe: str, seed: int, cap: int | None, citation: str, *, source: str = "") -> DataSet:
    index = {c: i for i, c in enumerate(classes)}
    splits: dict[str, tuple[Sample, ...]] = {}
    notes: list[str] = []
    for s in SPLITS:
        samples = []
        for path, src in per_split.get(s, []):
            g = group_class(src, grouping)
            if g is None:
                continue
            if g not in index:
                raise DataError(f"class {g!r} of {path.name} is not among the data set's classes", root)
            samples.append(Sample(path=path, label=index[g], source_class=src))
        splits[s] = tuple(samples)
    if cap is not None and recipe == "sol":
        capped = {}
        for s, samples in splits.items():
            per = [0] * len(classes)
            keep = []
            for smp in samples:
                if per[smp.label] < cap:
                    keep.append(smp)
                    per[smp.label] += 1
            capped[s] = tuple(keep)
        splits = capped
    seen: dict[Path, str] = {}
    dupes = []
    for s, samples in splits.items():
        for smp in samples:
            key = smp.path.resolve()
            if key in seen and seen[key] != s:
                dupes.append(f"{smp.path.name} in {seen[key]} and {s}")
            seen.setdefault(key, s)
    if dupes:
        msg = (f"{len(dupes)} image(s) appear in more than one split (leakage), e.g. {dupes[0]}")
        warnings.warn(f"{msg} ({root})", stacklevel=2)
        notes.append(msg)
    if not splits["train"]:
        raise DataError("the training split is empty", root)
    return DataSet(name=name, root=root, classes=classes, splits=splits, grouping=grouping, recipe=recipe,
                   seed=seed, cap=cap, citation=citation, warnings=tuple(notes), source=source)
