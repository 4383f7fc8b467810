"""The names etdeploy's library, configuration and CLI share: one definition each.

Pure Python (no numpy, torch or onnx), so that the CLI can build its ``--help`` choices from it
without importing anything heavy. Registries that own behaviour (quadrature rules, pruning
schedules, occlusion modes and map kinds) use these tuples as their keys; a test checks that every
registry and this module agree.
"""

from __future__ import annotations

#: Data splits of every data set.
SPLITS: tuple[str, ...] = ("train", "val", "test")
#: Class groupings of MSL data (``folder``: an ImageFolder tree's own class folders).
GROUPINGS: tuple[str, ...] = ("msl25", "paper5", "folder")
#: Groupings a user can ask for (``folder`` is implied by an ImageFolder root).
USER_GROUPINGS: tuple[str, ...] = ("paper5", "msl25")
#: Split recipes: the official sol-based split, or the paper's seeded stratified 80/10/10.
SPLIT_RECIPES: tuple[str, ...] = ("sol", "paper")

#: Integrated-gradients quadrature rules (:data:`etdeploy.attribution.quadrature.QUADRATURE_RULES`).
QUADRATURE_METHODS: tuple[str, ...] = (
    "gausslegendre", "riemann_left", "riemann_right", "riemann_middle", "riemann_trapezoid")
#: Compute precisions of attribution.
ATTRIBUTION_DTYPES: tuple[str, ...] = ("float32", "float64")

#: Pruning schedules (:data:`etdeploy.pruning.schedules.SCHEDULES`); ``class-ea`` takes ``:<class>``.
SCHEDULES: tuple[str, ...] = ("bottom-first", "top-first", "random", "class-ea")
#: Importance criteria usable as schedules (:data:`etdeploy.pruning.criteria.CRITERIA`).
CRITERIA: tuple[str, ...] = ("magnitude", "magnitude-l1", "taylor", "activation", "apoz", "ig-vote", "class-balanced")
#: Spacing of a sweep's default grid: even, or a quarter of the points up to 80 % and the rest beyond.
SWEEP_GRIDS: tuple[str, ...] = ("uniform", "dense-tail")

#: What ``export`` does with a model that still has NeuronMask layers.
EXPORT_MASK_MODES: tuple[str, ...] = ("refuse", "keep", "drop")

#: Occlusion executor modes (:class:`etdeploy.occlusion.IncrementalOcclusionExecutor`).
OCCLUSION_MODES: tuple[str, ...] = ("naive", "exact", "approx")
#: Values an occlusion map can hold (:func:`etdeploy.occlusion.result.map_values`).
MAP_KINDS: tuple[str, ...] = ("prob", "drop", "logit", "logprob")
#: A map whose values span less than this is "flat" (nothing to see, nothing to tune on).
FLAT_MAP_RANGE: float = 0.05

#: Precisions a target profile declares.
PRECISIONS: tuple[str, ...] = ("fp32", "fp16", "int8")

#: Rover-camera perturbations of the robustness evidence (:data:`etdeploy.assurance.perturb.PERTURBATIONS`).
PERTURBATIONS: tuple[str, ...] = ("noise", "brightness", "defocus", "motion_blur", "jpeg", "contrast")
#: Graded severities of every perturbation: 1 (mild) .. this (severe); 0 is the image unchanged.
MAX_SEVERITY: int = 5

#: Instruction sets a flight bundle's C is checked on (:data:`etdeploy.packaging.csource.ISAS`).
PACKAGE_ISAS: tuple[str, ...] = ("host", "ppc", "arm", "sparc")


def choices_text(names: tuple[str, ...]) -> str:
    """``"a, b or c"`` for error messages."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"
