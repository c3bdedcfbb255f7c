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
