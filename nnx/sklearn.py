"""scikit-learn estimators backed by nnx: ``NNXClassifier`` and ``NNXRegressor``, drop-ins
for scikit-learn's ``MLPClassifier`` and ``MLPRegressor``.

Needs the optional extra: ``pip install 'nnx-nets[sklearn]'`` (scikit-learn >= 1.6).
Nothing else in nnx imports scikit-learn.

scikit-learn's orientation is used at this boundary: X is (m, n_features), one example
per row, y is (m,) of any labels. nnx receives ``X.T``, which for a C-ordered X is
already nnx's example-contiguous (n_x, m) layout, so no copy is made on the way in.

    from nnx.sklearn import NNXClassifier
    clf = NNXClassifier(hidden_layer_sizes=(50,), epochs=500, lr=0.01, random_state=0)
    make_pipeline(StandardScaler(), clf).fit(X, y)
"""

from .estimators.classifier import NNXClassifier
from .estimators.common import (
    MULTICLASS_SUPPORTED,
    OPTIMIZERS,
    NNXEstimator,
    build_network,
    log_proba_from_logits,
)
from .estimators.regressor import NNXRegressor, build_regressor

__all__ = [
    "MULTICLASS_SUPPORTED",
    "OPTIMIZERS",
    "NNXClassifier",
    "NNXEstimator",
    "NNXRegressor",
    "build_network",
    "build_regressor",
    "log_proba_from_logits",
]
