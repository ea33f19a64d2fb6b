"""RimNet: automated assessment of paramagnetic rim lesions in MS (Barquero et al. 2020).

Pipeline stages, one sub-package each, the flow going one way:
``synth`` → ``data`` → ``models`` → ``training`` → ``evaluation`` → ``inference``.
"""

import os
from pathlib import Path

from omegaconf import OmegaConf

__version__ = "0.1.0"

# The Hydra configs (conf/ beside the package), as an absolute path so that entry points find them
# whether they run as `python -m rimnet.<stage>` or are called in-process.
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "conf")

# Resolvers used by the Hydra configs in conf/.
OmegaConf.register_new_resolver("len", lambda x: len(x), replace=True)
OmegaConf.register_new_resolver("abspath", lambda p: os.path.abspath(str(p)), replace=True)
OmegaConf.register_new_resolver("dirname", lambda p: os.path.dirname(os.path.abspath(str(p))), replace=True)
