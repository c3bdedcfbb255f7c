"""``nnx.distributed`` is ``nnx.training.distributed`` (this path is kept for existing code)."""

import sys

from .training import distributed as _module

sys.modules[__name__] = _module
