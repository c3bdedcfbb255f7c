"""An independent float64 reference, written plainly in the tutorials' style.

nnx must match it step for step. Nothing here imports nnx.
"""

import numpy as np


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def relu(z):
    return np.maximum(0, z)


def logreg_propagate(w, b, X, Y):
    """The tutorial's propagate(): w (n_x, 1), b scalar, X (n_x, m), Y (1, m)."""
    m = X.shape[1]
    A = sigmoid(np.dot(w.T, X) + b)
    cost = -1 / m * np.sum(Y * np.log(A) + (1 - Y) * np.log(1 - A))
    dw = 1 / m * np.dot(X, (A - Y).T)
    db = 1 / m * np.sum(A - Y)
    return {"dw": dw, "db": db}, cost


def logreg_optimize(w, b, X, Y, num_iterations, learning_rate):
    costs = []
    for _ in range(num_iterations):
        grads, cost = logreg_propagate(w, b, X, Y)
        w = w - learning_rate * grads["dw"]
        b = b - learning_rate * grads["db"]
        costs.append(cost)
    return w, b, costs


def deep_forward(X, parameters, activations):
    caches = []
    A = X
    L = len(parameters) // 2
    for l in range(1, L + 1):
        A_prev = A
        Z = np.dot(parameters["W" + str(l)], A_prev) + parameters["b" + str(l)]
        A = sigmoid(Z) if activations[l - 1] == "sigmoid" else relu(Z)
        caches.append((A_prev, Z, A))
    return A, caches


def deep_backward(AL, Y, caches, parameters, activations, loss):
    grads = {}
    L = len(caches)
    m = Y.shape[1]
    if loss == "bce":
        dAL = -(np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))
    else:  # squared error 1/(2m) sum (A - Y)^2
        dAL = AL - Y
    dA = dAL
    for l in reversed(range(1, L + 1)):
        A_prev, Z, A = caches[l - 1]
        if activations[l - 1] == "sigmoid":
            s = sigmoid(Z)
            dZ = dA * s * (1 - s)
        else:
            dZ = np.array(dA, copy=True)
            dZ[Z <= 0] = 0
        grads["dW" + str(l)] = 1 / m * np.dot(dZ, A_prev.T)
        grads["db" + str(l)] = 1 / m * np.sum(dZ, axis=1, keepdims=True)
        dA = np.dot(parameters["W" + str(l)].T, dZ)
    return grads


def deep_train(X, Y, parameters, activations, loss, learning_rate, num_iterations):
    parameters = {k: v.copy() for k, v in parameters.items()}
    L = len(parameters) // 2
    for _ in range(num_iterations):
        AL, caches = deep_forward(X, parameters, activations)
        grads = deep_backward(AL, Y, caches, parameters, activations, loss)
        for l in range(1, L + 1):
            parameters["W" + str(l)] -= learning_rate * grads["dW" + str(l)]
            parameters["b" + str(l)] -= learning_rate * grads["db" + str(l)]
    return parameters


# --------------------------------------------------------------------------------------
# torch.optim's update equations (the algorithm boxes of its documentation), plainly, in
# float64 and in their mathematical form (not PyTorch's order of operations): what nnx's
# optimizers must match step for step.
class ReferenceOptimizer:
    """One optimizer over a list of parameters; ``step(params, grads, lr)`` returns the new
    parameters. kind: "sgd", "rmsprop", "adam" or "adamw"; hyper-parameters as torch.optim."""

    def __init__(self, kind, **hyper):
        self.kind, self.hyper = kind, hyper
        self.state = {}
        self.t = 0

    def step(self, params, grads, lr, decays=None):
        self.t += 1
        out = []
        for i, (p, g) in enumerate(zip(params, grads)):
            if decays is not None and decays[i]:  # L2 on this parameter: g + decay * p
                g = g + decays[i] * p
            out.append(getattr(self, self.kind)(self.state.setdefault(i, {}), p, g, lr))
        return out

    def sgd(self, s, p, g, lr):
        h = self.hyper
        momentum, dampening = h.get("momentum", 0.0), h.get("dampening", 0.0)
        d = g + h.get("weight_decay", 0.0) * p
        if momentum:
            s["buf"] = d.copy() if "buf" not in s else momentum * s["buf"] + (1 - dampening) * d
            d = d + momentum * s["buf"] if h.get("nesterov") else s["buf"]
        return p - lr * d

    def rmsprop(self, s, p, g, lr):
        h = self.hyper
        alpha, eps, momentum = h.get("alpha", 0.99), h.get("eps", 1e-8), h.get("momentum", 0.0)
        g = g + h.get("weight_decay", 0.0) * p
        s["v"] = alpha * s.get("v", 0.0) + (1 - alpha) * g * g
        v = s["v"]
        if h.get("centered"):
            s["ga"] = alpha * s.get("ga", 0.0) + (1 - alpha) * g
            v = v - s["ga"] ** 2
        step = g / (np.sqrt(v) + eps)
        if momentum:
            s["buf"] = momentum * s.get("buf", 0.0) + step
            step = s["buf"]
        return p - lr * step

    def adam(self, s, p, g, lr, decoupled=False):
        h = self.hyper
        (beta1, beta2), eps, wd = h.get("betas", (0.9, 0.999)), h.get("eps", 1e-8), h.get("weight_decay", 0.0)
        if decoupled:
            p = p * (1 - lr * wd)
        else:
            g = g + wd * p
        s["m"] = beta1 * s.get("m", 0.0) + (1 - beta1) * g
        s["v"] = beta2 * s.get("v", 0.0) + (1 - beta2) * g * g
        m_hat = s["m"] / (1 - beta1**self.t)
        v_hat = s["v"] / (1 - beta2**self.t)
        return p - lr * m_hat / (np.sqrt(v_hat) + eps)

    def adamw(self, s, p, g, lr):
        return self.adam(s, p, g, lr, decoupled=True)


# --------------------------------------------------------------------------------------
# Philox4x32-10 in plain Python integers (Salmon et al. 2011; Random123's constants) and
# the dropout mask nnx documents: element (unit i, example j) of an (n, m) activation,
# e = j * n + i, is kept when word e % 4 of philox((q, batch, epoch, layer * 2^16 + q >> 32),
# (seed low, seed high)), q = e // 4, is at least floor(rate * 2^32).
def philox4x32_10(counter, key):
    mask = 0xFFFFFFFF
    c0, c1, c2, c3 = counter
    k0, k1 = key
    for r in range(10):
        if r:
            k0, k1 = (k0 + 0x9E3779B9) & mask, (k1 + 0xBB67AE85) & mask
        p0, p1 = 0xD2511F53 * c0, 0xCD9E8D57 * c2
        c0, c1, c2, c3 = (p1 >> 32) ^ c1 ^ k0, p1 & mask, (p0 >> 32) ^ c3 ^ k1, p0 & mask
    return c0, c1, c2, c3


def dropout_multiplier(seed, epoch, batch, layer, n, m, rate):
    """The (n, m) inverted-dropout multiplier: 1 / (1 - rate) where kept, 0 where dropped."""
    threshold = int(rate * 2**32)
    key = (seed & 0xFFFFFFFF, (seed >> 32) & 0xFFFFFFFF)
    out = np.zeros((n, m))
    words = {}
    for j in range(m):
        for i in range(n):
            e = j * n + i
            q = e // 4
            if q not in words:
                words[q] = philox4x32_10((q & 0xFFFFFFFF, batch, epoch, (layer << 16) | (q >> 32)), key)
            out[i, j] = 1 / (1 - rate) if words[q][e % 4] >= threshold else 0.0
    return out


# --------------------------------------------------------------------------------------
def mlp_train(
    X,
    Y,
    params,
    hidden,
    epochs,
    optimizer,
    lr,
    *,
    loss="bce",
    l2=0.0,
    weights=None,
    dropout=None,
    seed=0,
    batch_size=None,
    lr_at=None,
):
    """Train an MLP (hidden activations ``hidden``: "relu"/"tanh"; sigmoid + BCE output, or
    softmax + cross-entropy with loss="cross_entropy" and integer labels Y (m,)) with a
    ReferenceOptimizer, as nnx documents its training: the loss of each example weighted by
    ``weights`` (m,) and averaged over the batch; L2 ``l2`` / (2 m) * sum W^2 on the
    weights (m = all training examples); ``dropout`` rates after each hidden layer with
    the masks of dropout_multiplier(seed, epoch, batch, layer); mini-batches in the order
    np.random.default_rng(seed).permutation(m) draws each epoch; ``lr_at(epoch)`` the
    learning rate of each epoch (0-based). Returns (params, losses)."""
    params = [(W.copy(), b.copy()) for W, b in params]
    f = {"relu": lambda z: np.maximum(z, 0), "tanh": np.tanh}
    df = {"relu": lambda a: (a > 0).astype(float), "tanh": lambda a: 1 - a * a}
    m_all = X.shape[1]
    w_all = np.ones(m_all) if weights is None else np.asarray(weights, float)
    rng = np.random.default_rng(seed)
    decays = [l2 / m_all if k % 2 == 0 else 0.0 for k in range(2 * len(params))]
    losses = []
    for epoch in range(1, epochs + 1):
        rate_now = lr if lr_at is None else lr_at(epoch - 1)
        order = rng.permutation(m_all) if batch_size else np.arange(m_all)
        size = batch_size or m_all
        epoch_loss = 0.0
        for batch, lo in enumerate(range(0, m_all, size)):
            idx = order[lo : lo + size]
            Xb, Yb, wb, mb = X[:, idx], np.asarray(Y)[..., idx], w_all[idx], len(idx)
            A, outs, masks = [Xb], [], []
            for k, ((W, b), act) in enumerate(zip(params[:-1], hidden)):
                out = f[act](W @ A[-1] + b)
                outs.append(out)
                rate = dropout[k] if dropout else 0.0
                mask = dropout_multiplier(seed, epoch, batch, k, *out.shape, rate) if rate else 1.0
                masks.append(mask)
                A.append(out * mask)
            Z = params[-1][0] @ A[-1] + params[-1][1]
            if loss == "cross_entropy":
                P = np.exp(Z - Z.max(axis=0))
                P /= P.sum(axis=0)
                onehot = np.zeros_like(P)
                onehot[Yb.reshape(-1).astype(int), np.arange(mb)] = 1
                per_example = -np.log((P * onehot).sum(axis=0))
                dZ = (P - onehot) * wb / mb
            else:
                Yb = Yb.reshape(1, -1)
                P = 1 / (1 + np.exp(-Z))
                per_example = -(Yb * np.log(P) + (1 - Yb) * np.log(1 - P))[0]
                dZ = (P - Yb) * wb / mb
            penalty = l2 / (2 * m_all) * sum((W**2).sum() for W, _ in params)
            epoch_loss += (np.mean(per_example * wb) + penalty) * mb / m_all
            grads = [None] * len(params)
            for k in range(len(params) - 1, -1, -1):
                grads[k] = (dZ @ A[k].T, dZ.sum(axis=1, keepdims=True))
                if k > 0:
                    dZ = (params[k][0].T @ dZ) * masks[k - 1] * df[hidden[k - 1]](outs[k - 1])
            flat = optimizer.step(
                [p for pair in params for p in pair], [g for pair in grads for g in pair], rate_now, decays
            )
            params = [(flat[2 * k], flat[2 * k + 1]) for k in range(len(params))]
        losses.append(epoch_loss)
    return params, losses
