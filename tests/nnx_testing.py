"""Helpers shared by the tests."""


def tolerance(dtype: str) -> dict:
    """Cross-backend tolerances: float64 to rtol 1e-7, float32 close to its rounding."""
    return {"rtol": 1e-7, "atol": 1e-12} if dtype == "float64" else {"rtol": 2e-4, "atol": 2e-5}
