"""Models: zoo, structural contract, masks and safetensors serialisation."""

from etdeploy.models.contract import (
    DenseLayer,
    dense_layers,
    get_dense_layer,
    has_masks,
    layer_names,
    masks,
    split_model,
    with_masks,
    without_masks,
)
from etdeploy.models.masks import NeuronMask
from etdeploy.models.select import SelectFeatures
from etdeploy.models.serialization import load_model, save_model, weights_fingerprint
from etdeploy.models.zoo import ARCHS, ETModel, ModelSpec, build_model, count_parameters

__all__ = [
    "ARCHS", "DenseLayer", "ETModel", "ModelSpec", "NeuronMask", "SelectFeatures", "build_model", "count_parameters",
    "dense_layers", "get_dense_layer", "has_masks", "layer_names", "load_model", "masks", "save_model",
    "split_model", "weights_fingerprint", "with_masks", "without_masks",
]
