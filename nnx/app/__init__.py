"""The application layer: the ``nnx`` command line and the jobs behind it (train, predict,
demo, info, plot, bench). It imports the core (``nnx.model``, ``nnx.registry`` ...) and the
data loaders (``nnx.data``); nothing below imports it. ``nnx.cli``, ``nnx.runner``,
``nnx.demo``, ``nnx.info``, ``nnx.plot`` and ``nnx.bench*`` re-export it at their earlier
import paths."""
