"""The ONNX backend node cases of one operator, made from onnx.backend.test.case.node's generators directly (its
collect_testcases keeps the cases of the first operator it was asked for in a process)."""
import importlib
import warnings

import numpy as np

RTOL, ATOL = 1e-3, 1e-7          # the backend's tolerance for node cases


def node_cases(module):
    """[(name, ModelProto, inputs, expected outputs)] of onnx.backend.test.case.node.<module>."""
    import onnx
    from onnx import helper
    from onnx.backend.test.case.base import Base
    mod = importlib.import_module(f"onnx.backend.test.case.node.{module}")
    out = []

    def expect(node, inputs, outputs, name, **kw):
        vi = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.shape(a))
              for n, a in zip([i for i in node.input if i], inputs)]
        vo = [helper.make_tensor_value_info(n, helper.np_dtype_to_tensor_dtype(np.asarray(a).dtype), np.shape(a))
              for n, a in zip([o for o in node.output if o], outputs)]
        opset = kw.get("opset_imports") or [helper.make_opsetid("", onnx.defs.get_schema(node.op_type).since_version)]
        model = helper.make_model(helper.make_graph([node], name, vi, vo), opset_imports=opset)
        out.append((name, model, [np.asarray(a) for a in inputs], [np.asarray(a) for a in outputs]))
    real, mod.expect = mod.expect, expect
    try:
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            for cls in [c for c in vars(mod).values() if isinstance(c, type) and issubclass(c, Base) and c is not Base]:
                for k in sorted(dir(cls)):
                    if k.startswith("export"):
                        getattr(cls, k)()
    finally:
        mod.expect = real
    return out


def coverage_tool():
    """tools/onnx_coverage.py as a module (it classifies a case: layer, option or none)."""
    import importlib.util
    from pathlib import Path
    spec = importlib.util.spec_from_file_location("onnx_coverage", Path(__file__).parents[1] / "tools" / "onnx_coverage.py")
    cov = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cov)
    return cov
