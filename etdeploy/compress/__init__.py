"""Compress to a target (docs/method.md §13): search masking percent per layer, importance criterion and
precision for the most accurate model that fits a flight processor's budgets, with the accuracy /
size / compute Pareto front.

    from etdeploy.compress import compress_dirs
    run = compress_dirs("runs/model", "runs/rank", dataset=ds, target="stm32h7", out="runs/compress")
    run.chosen.label, run.reason, [c.label for c in run.front]

Modules: :mod:`.space` (grid, kept neurons, structure key), :mod:`.heads` (accuracy of masked heads on
cached conv features), :mod:`.cost` (fit cost and its lower bound), :mod:`.front` (Pareto front),
:mod:`.search` (the use case), :mod:`.finalise` (finalists and output), :mod:`.plot` (front plot).
"""

from etdeploy.compress.cost import CandidateCost
from etdeploy.compress.front import pareto_front
from etdeploy.compress.search import Candidate, CompressRun, HeldOut, compress_dirs, read_compress
from etdeploy.compress.space import COARSE_PERCENTS, PRECISIONS

__all__ = ["COARSE_PERCENTS", "PRECISIONS", "Candidate", "CandidateCost", "CompressRun", "HeldOut", "compress_dirs",
           "pareto_front", "read_compress"]
