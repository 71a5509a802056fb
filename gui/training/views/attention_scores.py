"""The attention scores z_ts a layer really computes (its scale and softcap) and their formula for the hover text."""
from math import sqrt

import numpy as np


def score_of(layer):
    """{"scale": factor on q·k or None for 1/√d_k, "softcap": c or 0, "d_k": width of a head or None}."""
    dk = None
    if layer.type == "ScaledDotProductAttention":
        try:
            dk = int(layer._dims(layer.in_shapes)[2])
        except (TypeError, ValueError, AttributeError):
            dk = None
        return {"scale": float(layer.config.get("scale") or 0) or None,
                "softcap": float(layer.config.get("softcap") or 0), "d_k": dk}
    q = layer.taps.get("q", getattr(layer, "q", None))
    if isinstance(q, np.ndarray) and q.ndim == 4:
        dk = int(q.shape[-1])
    elif layer.type == "CrossAttention" and getattr(layer, "in_shapes", None):     # its d_k: config or d_model/h
        dk = int(layer._dk(layer.in_shapes[0][1]))
    return {"scale": None, "softcap": 0.0, "d_k": dk}


def sdpa_logits(layer, i):
    """(heads, T, S) scores z_ts of sample i of a ScaledDotProductAttention's last forward: scale·q_t·k_s, or with
    a softcap c, c·tanh(scale·q_t·k_s/c); None before a forward."""
    qkv = getattr(layer, "qkv", None)
    if qkv is None:
        return None
    h, hkv = layer._heads()
    q, k = np.asarray(qkv[0][i], np.float64), np.asarray(qkv[1][i], np.float64)   # (T, h·d_k), (S, h_kv·d_k)
    T, S, dk = len(q), len(k), q.shape[1] // h
    q = q.reshape(T, h, dk).transpose(1, 0, 2)                                      # (h, T, d_k)
    k = np.repeat(k.reshape(S, hkv, dk).transpose(1, 0, 2), h // hkv, axis=0)       # (h, S, d_k): head j uses j·h_kv/h
    z = layer._scale(dk) * (q @ k.transpose(0, 2, 1))                               # (h, T, S)
    c = float(layer.config["softcap"])
    return c * np.tanh(z / c) if c else z


def term(sc, u):
    """The score of key u as written: q_t·k_u/√d_k, 0.3·q_t·k_u, or 1.5·tanh(…/1.5) with a softcap."""
    s = f"q_t·k_{u}/√d_k" if sc.get("scale") is None else f"{sc['scale']:.4g}·q_t·k_{u}"
    c = sc.get("softcap") or 0
    return f"{c:.4g}·tanh({s}/{c:.4g})" if c else s


def formula(sc, s="s"):
    """α_{t→s} = exp(z_ts) / Σ_u exp(z_tu) written out with the layer's own scale and softcap."""
    sc = sc or {"scale": None, "softcap": 0.0, "d_k": None}
    return f"α_{{t→{s}}} = exp({term(sc, s)}) / Σ_u exp({term(sc, 'u')})"


def constants(sc):
    """The node's numbers the formula uses, e.g. "d_k = 8, 1/√d_k = 0.3536" ("" when unknown)."""
    if not sc or sc.get("d_k") is None:
        return ""
    return f"d_k = {sc['d_k']}" + (f", 1/√d_k = {1 / sqrt(sc['d_k']):.4g}" if sc.get("scale") is None else "")
