"""Cost of a candidate on a target: the fit analysis of its sliced model's ONNX graph (docs/method.md §13).

Exact cost (:func:`exact_cost`): slice the masked model (:func:`etdeploy.pruning.slice_model`), export it
to ONNX bytes (:func:`etdeploy.export.export_onnx_bytes`), analyse the graph
(:func:`etdeploy.targets.analysis.analyse_graph`) and give the verdict on the target
(:func:`etdeploy.targets.fit_report`): the same figures ``etdeploy fit`` reports. fp32 uses the checks
with the weights as stored; int8 the fit's int8 estimate for memory (weights int8 plus scales, biases
int32) with the same op and latency checks, and the precision check of an int8 (QDQ) model.

Lower bound (:func:`cost_bound`): from the unpruned model's analysis and the kept counts alone, a
weights size and MACC that no slicing of that structure can go below (dense Linears counted exactly;
the last conv and the layers after it scaled by the surviving channels; the Gather index a sliced
model adds is left out). A candidate whose bound already breaks a budget is infeasible without an
export.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from etdeploy.records import Record
from etdeploy.targets.analysis import GraphAnalysis
from etdeploy.targets.fit import ResourceCheck
from etdeploy.targets.profile import TargetProfile

#: Resources a candidate is checked on (the fit's checks of the chosen precision).
RESOURCES: tuple[str, ...] = ("flash", "ram", "ops", "precision", "latency")


@dataclass(frozen=True)
class CandidateCost(Record):
    """A sliced model at one precision on one target: flash (weights), RAM need, MACC, parameters,
    latency estimate and lower bound (s), and the resources that do not fit (empty: it fits).
    ``shortfall``: the largest need / budget over the memory and latency checks (<= 1 fits them)."""

    flash_bytes: int
    ram_bytes: int
    macc: int
    parameters: int
    latency_s: float
    latency_lower_bound_s: float
    failing: tuple[str, ...]
    shortfall: float

    @property
    def fits(self) -> bool:
        return not self.failing

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "fits": self.fits}


def _ratio(check: ResourceCheck | None) -> float:
    if check is None or check.available <= 0:
        return 0.0
    return float(check.need) / float(check.available)


def cost_from_analysis(analysis: GraphAnalysis, target: TargetProfile, precision: str,
                       max_latency_s: float | None) -> CandidateCost:
    """The :class:`CandidateCost` of a graph at ``precision`` (``fp32`` | ``int8``) on ``target``. Pure.

    An fp32 graph at ``int8`` is costed with the fit's int8 estimate; an int8 (QDQ) graph is costed as
    stored (the fit's own checks of such a graph)."""
    from etdeploy.targets.fit import fit_report

    report = fit_report(analysis, target, deadline_s=max_latency_s)
    by_name = {c.resource: c for c in report.checks}
    if precision == "int8" and analysis.precision == "fp32":  # the fit's int8 estimate of an fp32 graph
        by_name.update({c.resource: c for c in report.int8_checks})
        ok = target.int8 or target.fp32
        by_name["precision"] = ResourceCheck("precision", 0.0, 0.0, "", "fits" if ok else "does not fit",
                                             "int8 (QDQ) model")
    failing = tuple(r for r in RESOURCES if r in by_name and by_name[r].status == "does not fit")
    shortfall = max(_ratio(by_name.get("flash")), _ratio(by_name.get("ram")), _ratio(by_name.get("latency")))
    return CandidateCost(flash_bytes=int(by_name["flash"].need), ram_bytes=int(by_name["ram"].need),
                         macc=int(analysis.total_macc), parameters=int(analysis.parameters),
                         latency_s=float(report.latency_s), latency_lower_bound_s=float(report.latency_lower_bound_s),
                         failing=failing, shortfall=float(shortfall))


def sliced_analysis(masked_model) -> GraphAnalysis:
    """Slice ``masked_model`` (not changed), export it to ONNX bytes and analyse the graph at batch 1."""
    import onnx

    from etdeploy.export import export_onnx_bytes, prepare_for_export
    from etdeploy.pruning import slice_model
    from etdeploy.targets.analysis import analyse_graph

    sliced, _ = slice_model(masked_model)
    data = export_onnx_bytes(prepare_for_export(sliced), sliced.spec.input_size)
    return analyse_graph(onnx.load_from_string(data))


@dataclass(frozen=True)
class CostBound:
    """Lower bounds on a structure's fp32 weights bytes and MACC (see the module docstring)."""

    weights_bytes_fp32: float
    macc: float

    def breaks(self, target: TargetProfile, precision: str, max_latency_s: float | None) -> bool:
        """True when even the bound exceeds a budget (flash, or RAM where weights live in RAM, or latency)."""
        weights = self.weights_bytes_fp32 / 4.0 if precision == "int8" else self.weights_bytes_fp32
        if target.flash_bytes > 0 and weights > target.flash_bytes:
            return True
        if target.weights_in_ram and weights > target.model_ram_bytes:
            return True
        return max_latency_s is not None and self.macc / target.sustained_macs_per_s > max_latency_s


def cost_bound(geometry, unpruned: GraphAnalysis, key: tuple[int, ...]) -> CostBound:
    """:class:`CostBound` of the structure ``key`` (:meth:`etdeploy.compress.space.Geometry.structure_key`)."""
    full_key = (*(geometry.widths[n] for n in geometry.layers), geometry.channels)
    dense_full, macc_full = geometry.dense_counts(full_key)
    dense, macc = geometry.dense_counts(key)
    gone = (geometry.channels - key[-1]) / geometry.channels if geometry.channels else 0.0
    conv_rows = [r for r in unpruned.layers if r.op == "Conv"]
    last_conv_macc = conv_rows[-1].macc if conv_rows else 0
    weights = unpruned.weights_bytes_fp32 - 4.0 * (dense_full - dense) - 4.0 * geometry.tail_parameters * gone
    return CostBound(weights_bytes_fp32=max(0.0, weights),
                     macc=max(0.0, unpruned.total_macc - (macc_full - macc) - last_conv_macc * gone))


__all__ = ["RESOURCES", "CandidateCost", "CostBound", "cost_bound", "cost_from_analysis", "sliced_analysis"]
