"""RimNet: automated assessment of paramagnetic rim lesions in MS (Barquero et al. 2020).

Pipeline stages, one sub-package each, the flow going one way:
``synth`` → ``data`` → ``models`` → ``training`` → ``evaluation`` → ``inference``.
"""

__version__ = "0.1.0"
