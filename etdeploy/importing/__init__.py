"""Bring your own trained model: turn weights trained elsewhere into an ordinary etdeploy model directory.

- :func:`import_onnx_model`: an ONNX image classifier (Keras 3, tf2onnx, torch.onnx...), converted op by
  op into the contract's plain modules, with its interface (NHWC input, Softmax output) recorded;
- :func:`import_torch_model`: a PyTorch model factory (``package.module:factory``) plus its weights
  (a ``.safetensors`` file or a ``.pt``/``.pth`` state dict, read without unpickling objects);
- :func:`read_state_dict`: the safe weights reader;
- :func:`resolve_normalisation`: the input normalisation, which an import never guesses.
"""

from etdeploy.importing.common import ImportOrigin, ImportRun, LogitCheck
from etdeploy.importing.normalisation import Normalisation, resolve_normalisation
from etdeploy.importing.onnx_model import OnnxImportRun, import_onnx_model
from etdeploy.importing.torch_weights import import_torch_model
from etdeploy.importing.weights_file import WEIGHTS_SUFFIXES, read_state_dict

__all__ = [
           "WEIGHTS_SUFFIXES",
           "ImportOrigin",
           "ImportRun",
           "LogitCheck",
           "Normalisation",
           "OnnxImportRun",
           "import_onnx_model",
           "import_torch_model",
           "read_state_dict",
           "resolve_normalisation",
]
