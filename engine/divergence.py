"""Divergence: what became NaN or exploded, and which kept weights still predict finite values (the Trainer's part)."""
import numpy as np

from ._jit import njit
from .kernels import sq_norm
from .seq2seq import loss_mask

EXPLODED = 100.0       # the running training loss above EXPLODED × max(its start, 1) counts as divergence


@njit(cache=True, nogil=True, error_model="numpy")
def copy_finite(src, dst):
    """dst = src (flat arrays); whether every value is finite, in the same pass (v − v ≠ 0 for NaN and ±inf)."""
    bad = 0
    for i in range(src.size):
        v = src[i]
        dst[i] = v
        bad |= (v - v) != 0
    return bad == 0


class Divergence:
    """Trainer methods that keep, restore and check weights when training diverges."""

    def _copy(self, into=None):
        """Copy the weights and the state (running statistics) into `into`, or into new arrays."""
        m = self.model
        if into is None:
            return m.theta.copy(), {k: v.copy() for k, v in m.state.items()}
        np.copyto(into[0], m.theta)
        for k, v in m.state.items():
            np.copyto(into[1][k], v)
        return into

    def _snapshot(self, into):
        """The weights (checked finite in the same pass) and the state copied into `into`; whether the weights
        are finite (the state is checked at epoch ends, _predicts_well)."""
        m = self.model
        ok = copy_finite(m.theta, into[0])
        for k, v in m.state.items():
            np.copyto(into[1][k], v)
        return ok

    def _put(self, kept):
        m = self.model
        np.copyto(m.theta, kept[0])
        for k, v in kept[1].items():
            np.copyto(m.state[k], v)

    @staticmethod
    def _not_finite(loss, gn):
        """What became NaN or infinite (the loss or the gradient), else None."""
        if not np.isfinite(loss):
            return "the loss became NaN or infinite"
        if not np.isfinite(gn):
            return "the gradient became NaN or infinite"
        return None

    def _bad_loss(self, loss, name):
        """What is wrong with `name` when the loss is NaN, infinite or exploded (above self.limit), else None."""
        if loss is None:
            return None
        if not np.isfinite(loss):
            return f"{name} became NaN or infinite"
        if self.limit is not None and loss > self.limit:
            return (f"{name} exploded to {loss:.4g}, more than {EXPLODED:g} × max(1, the first step's loss "
                    f"{self.start:.4g})")
        return None

    def _finite_weights(self):
        """Whether the weights and the state (running statistics) are finite."""
        m = self.model
        return bool(np.isfinite(sq_norm(m.theta))) and all(np.all(np.isfinite(v)) for v in m.state.values())

    def _predicts_well(self, xb, yb, mb=None):
        """The weights are finite and give finite outputs and a finite loss not above the exploded-loss bound
        (evaluation mode) on up to 256 samples of the batch xb and of the training set's first samples."""
        m, ds = self.model, self.train
        if not self._finite_weights():
            return False
        k = min(256, m.batch_for())
        for x, y, mask in ((xb, yb, mb), self._batch(ds, slice(0, k))):
            mask = None if mask is None else mask[:k]
            out = m.forward(x[:k], logits=self.fused, mask=mask)
            loss = self.loss(out, self._scaled(y[:k]), self.fused, loss_mask(mask))[0]
            if not np.all(np.isfinite(out)) or self._bad_loss(loss, "") is not None:
                return False
        return True

    def _diverged(self, where, what, xb, yb, mb, kept):
        """Restore the first kept weights that predict finite, not exploded values; the message says which."""
        for snap, label in kept:
            self._put(snap)
            if self._predicts_well(xb, yb, mb):
                which = f"kept the weights of {label}, which predict finite values"
                break
        else:
            which = ("no kept weights predict finite, not exploded values (the model holds those of "
                     f"{kept[-1][1]})")
        return f"training diverged at {where}: {what}; {which}. Try a smaller learning rate."
