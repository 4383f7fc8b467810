"""Bring your own trained model: turn weights trained elsewhere into an ordinary etdeploy model directory.

- :func:`import_torch_model`: a PyTorch model factory (``package.module:factory``) plus its weights
  (a ``.safetensors`` file or a ``.pt``/``.pth`` state dict, read without unpickling objects);
- :func:`read_state_dict`: the safe weights reader;
- :func:`resolve_normalisation`: the input normalisation, which an import never guesses.
"""

from etdeploy.importing.normalisation import Normalisation, resolve_normalisation
from etdeploy.importing.torch_weights import ImportOrigin, ImportRun, LogitCheck, import_torch_model
from etdeploy.importing.weights_file import WEIGHTS_SUFFIXES, read_state_dict

__all__ = [
           "WEIGHTS_SUFFIXES",
           "ImportOrigin",
           "ImportRun",
           "LogitCheck",
           "Normalisation",
           "import_torch_model",
           "read_state_dict",
           "resolve_normalisation",
]
