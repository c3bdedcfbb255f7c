"""``nnx.chunked`` is ``nnx.training.chunked`` (this path is kept for existing code)."""

import sys

from .training import chunked as _module

sys.modules[__name__] = _module
