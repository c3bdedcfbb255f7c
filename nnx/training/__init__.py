"""Training: one engine (``engine``) over every way to fit.

* ``engine`` - a validated fit request, the rule that refuses what a solver or gradient
  source cannot honour, and the one finish every fit shares;
* ``steploop`` - the step loop over full, mini or streamed batches in this process;
* ``lbfgs`` - L-BFGS (scipy's L-BFGS-B) over single-pass loss-and-gradient evaluations;
* ``chunked`` - exact full-batch gradients summed over column chunks of X;
* ``distributed`` - the same chunks on Dask workers (the ``dask`` extra).
"""

from .divergence import diverged
from .steploop import Batches, EpochCallback, check_parameters_finite, run_epochs

__all__ = ["Batches", "EpochCallback", "check_parameters_finite", "diverged", "run_epochs"]
