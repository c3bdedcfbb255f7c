"""``nnx.lbfgs`` is ``nnx.training.lbfgs`` (this path is kept for existing code)."""

import sys

from .training import lbfgs as _module

sys.modules[__name__] = _module
