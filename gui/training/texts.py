"""The dock's texts of a finished run and of k-fold cross-validation."""
from engine.report import baseline_text, regression_text

from .views.compare import SHORT

STATUS = {"completed": "Finished", "early_stopped": "Early-stopped", "stopped": "Stopped",
          "diverged": "Diverged"}


def result_text(result, wall):
    """The finished-run line: what ran and how long (wall time from Train to result, and the training loop's
    own share), the metrics in the data's units for regression, the losses, and the naive baseline."""
    st = result["status"]
    n = result["epochs"]
    text = (f"{STATUS.get(st, st)} after {n} epoch{'' if n == 1 else 's'} ({result['steps']} steps; {wall:.1f} s from "
            f"Train to result, of which the training loop {result['seconds']:.1f} s)")
    reg = regression_text(result)
    losses = [f"{k.split('_')[0].replace('val', 'validation')} {result[k]:.4g}" for k in ("train_loss", "val_loss")
              if k in result]
    acc = [f"{k.replace('_', ' ').replace('val ', 'validation ').replace('bleu', 'BLEU')} {result[k]:.4g}"
           for k in ("train_accuracy", "val_accuracy", "val_exact_match", "val_token_accuracy", "val_bleu")
           if k in result]
    bits = ([reg] if reg else []) + acc + ([f"loss{' (standardised targets)' if reg else ''} " + ", ".join(losses)]
                                           if losses else [])
    text += ": " + "; ".join(bits) if bits else ""
    base = baseline_text(result)
    return text + (f". {base[:1].upper()}{base[1:]}" if base else "")


def kfold_text(summary):
    """The k-fold summary: each metric's mean ± std over the folds."""
    return ", ".join(f"{SHORT.get(k, k.replace('_', ' '))} {m:.4g} ± {s:.2g}" for k, (m, s) in summary.items())
