"""The formula of the attention scores z_ts a layer really computes (its scale and softcap) for the hover text; the
scores themselves come from the layer (attention_scores in engine/layers)."""
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
