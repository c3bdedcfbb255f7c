"""What ``nnx bench`` times, kept at this import path: see ``nnx.app.bench_workloads``."""

from __future__ import annotations

from .app.bench_workloads import (
    CLASSES,
    HIDDEN,
    MODELS,
    N_X,
    X_DTYPES,
    blas_products,
    epoch_function,
    kernel_variants,
    make_data,
    product_rows,
    read_reference,
    torch_contenders,
    useful_flops,
)

__all__ = [
    "CLASSES",
    "HIDDEN",
    "MODELS",
    "N_X",
    "X_DTYPES",
    "blas_products",
    "epoch_function",
    "kernel_variants",
    "make_data",
    "product_rows",
    "read_reference",
    "torch_contenders",
    "useful_flops",
]
