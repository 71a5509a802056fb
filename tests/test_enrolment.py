"""Every registry layer is enrolled where a layer must be: samples, and beside itself an ONNX exporter (run in
onnxruntime on each sample, with the lengths input for masked ones), a PyTorch emitter and its forward in torch ops
(test_torch_parity runs it); its fused path: test_fused. No central table stands in for a missing one."""
import numpy as np
import pytest

from engine.layers import REGISTRY, Layer
from engine.model import Model
from gradcheck import cases, declares_samples, exempt
from registry_models import randomize, sample_graph, sample_inputs


def missing(cls):
    """What a layer type lacks of what every layer declares (empty when fully enrolled)."""
    out = []
    if not declares_samples(cls):
        out.append("samples()")
    if cls.to_onnx is None:
        out.append("an ONNX exporter (to_onnx)")
    if cls.to_torch is None and not exempt(cls.type, "torch"):
        out.append("a PyTorch emitter (to_torch)")
    if cls.torch_reference is None and not exempt(cls.type, "torch"):
        out.append("its forward in torch ops (torch_reference)")
    return out


def test_every_layer_is_enrolled():
    assert {t: missing(cls) for t, cls in sorted(REGISTRY.items()) if missing(cls)} == {}


def test_an_unenrolled_layer_is_named():
    class Bare(Layer):
        category = "core"
    assert missing(Bare) == ["samples()", "an ONNX exporter (to_onnx)", "a PyTorch emitter (to_torch)",
                             "its forward in torch ops (torch_reference)"]


CASES = cases()


@pytest.mark.parametrize("type,config,shapes,opts", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_onnx_export_of_each_sample_runs_like_the_engine(type, config, shapes, opts):
    ort = pytest.importorskip("onnxruntime")
    from engine.onnx_export import to_onnx
    model = randomize(Model(sample_graph(type, config, shapes, ints="ints" in opts, domain=opts.get("domain"))))
    x, lengths = sample_inputs(model, opts)
    want = model.predict(x, lengths=lengths)
    m = to_onnx(model)
    sess = ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x}
    if any(i.name == "lengths" for i in sess.get_inputs()):
        feed["lengths"] = lengths if lengths is not None else np.full(len(x), model.input_shape[0], np.int32)
    got = sess.run(None, feed)[0]
    assert got.shape == want.shape
    if lengths is not None and want.ndim == 3 and want.shape[1] == x.shape[1]:   # per step: valid steps only
        valid = np.arange(x.shape[1]) < lengths[:, None]
        got, want = got[valid], want[valid]
    scale = max(1.0, float(np.abs(want).max()))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * scale)
