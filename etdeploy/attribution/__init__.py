"""Neuron attribution: integrated gradients on dense layers, expected attributions and ranks.

Pipeline position: data -> model -> **attribution** -> pruning. See docs/method.md §1-2.
"""

from etdeploy.attribution.expected import ExpectedAttribution
from etdeploy.attribution.integrated import NeuronIG, neuron_integrated_gradients
from etdeploy.attribution.quadrature import QUADRATURE_RULES, quadrature
from etdeploy.attribution.rank_dirs import RankRun, rank_dirs
from etdeploy.attribution.ranking import layer_attributions, rank_model
from etdeploy.attribution.result import LayerAttribution, Ranking, load_ranking, save_ranking

__all__ = [
    "QUADRATURE_RULES",
    "ExpectedAttribution",
    "LayerAttribution",
    "NeuronIG",
    "RankRun",
    "Ranking",
    "layer_attributions",
    "load_ranking",
    "neuron_integrated_gradients",
    "quadrature",
    "rank_dirs",
    "rank_model",
    "save_ranking",
]
