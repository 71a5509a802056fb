"""Texts of a training result shared by the CLI and the window: metrics in the data's units, the naive baseline."""
import math

REGRESSION = (("rmse", "RMSE"), ("mae", "MAE"), ("r2", "R²"))


def _ok(v):
    return isinstance(v, (int, float)) and math.isfinite(v)


def regression_text(res):
    """"validation RMSE 1.46, MAE 1.05, R² 0.97 (training: RMSE 1.3, MAE 0.95, R² 0.98)" in the targets'
    units, or "" when the result has no regression metrics."""
    parts = []
    for split, name in (("val", "validation"), ("train", "training")):
        got = [f"{label} {res[f'{split}_{k}']:.4g}" for k, label in REGRESSION if _ok(res.get(f"{split}_{k}"))]
        if got:
            parts.append((name, ", ".join(got)))
    if not parts:
        return ""
    head = f"{parts[0][0]} {parts[0][1]}"
    return head + (f" ({parts[1][0]}: {parts[1][1]})" if len(parts) > 1 else "")


def baseline_text(res):
    """The validation RMSE against the naive baseline the data defines (persistence for a series: next = the
    last value seen), or "" without one. Worse than the baseline is said as such, never as a negative gain."""
    b, v = res.get("baseline_val_rmse"), res.get("val_rmse")
    if res.get("status") == "diverged" or not (_ok(b) and _ok(v)) or b <= 0:
        return ""
    ratio = (v / b) ** 2                                     # MSE model / MSE baseline
    how = (f"MSE {100 * (1 - ratio):.1f} % lower" if ratio <= 1 else
           f"MSE {ratio:.3g}× the baseline's: worse than predicting the last value seen")
    return f"validation RMSE {v:.4g} vs persistence (next = last value seen) {b:.4g}: {how}"
