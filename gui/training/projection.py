"""PCA of a layer's activations for the live projection view (engine.pca when present)."""
import numpy as np

try:                                   # the engine's PCA (spec §6); the fallback below keeps the view usable
    from engine import pca as _engine_pca
except ImportError:                    # pragma: no cover - depends on the engine version
    _engine_pca = None


def activations(model, layer, x):
    """(n, features) activations of `layer` for samples x, in evaluation mode."""
    if _engine_pca is not None and hasattr(_engine_pca, "activations"):
        a = _engine_pca.activations(model, layer, x)
    else:
        if layer not in model.layers:
            raise KeyError(f"no layer named {layer!r}")
        model.forward(x)
        a = model.acts[layer]
    return np.asarray(a, np.float64).reshape(len(x), -1)         # (n, features)


def project(a, k=2):
    """(scores (n, k), explained-variance ratios of all components) of activations a (n, d)."""
    if _engine_pca is not None and hasattr(_engine_pca, "PCA"):
        p = _engine_pca.PCA(k).fit(a) if _accepts_k() else _engine_pca.PCA().fit(a)
        scores = np.asarray(p.transform(a))[:, :k]
        return _pad(scores, k), np.asarray(p.explained_variance_ratio, float)
    c = a - a.mean(axis=0)                                       # (n, d) centred
    cov = c.T @ c / max(len(c) - 1, 1)                           # (d, d)
    lam, vec = np.linalg.eigh(cov)
    order = np.argsort(lam)[::-1]
    lam, vec = np.clip(lam[order], 0, None), vec[:, order]
    tot = lam.sum()
    evr = lam / tot if tot > 0 else np.zeros_like(lam)
    return _pad(c @ vec[:, :k], k), evr                         # (n, k)


def _accepts_k():
    import inspect
    try:
        return len(inspect.signature(_engine_pca.PCA).parameters) > 0
    except (TypeError, ValueError):
        return False


def _pad(s, k):
    """Scores with k columns (a 1-feature layer gives a zero second axis)."""
    if s.shape[1] < k:
        s = np.c_[s, np.zeros((len(s), k - s.shape[1]))]
    return s
