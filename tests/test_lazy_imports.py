"""Start-up imports only what it uses: the window opens without numba, pyarrow or torch, each of the engine's
kernels is made when it is first used, and they still work (checked in fresh interpreters, through sys.modules)."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("numba", "llvmlite", "scipy", "pyarrow", "torch", "onnx", "onnxruntime", "optuna")


def _run(code, tmp_path):
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", HOME=str(tmp_path), XDG_CONFIG_HOME=str(tmp_path / "c"),
               XDG_DATA_HOME=str(tmp_path / "d"), LAYERBOARD_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r.stdout.strip().splitlines()[-1]


def test_engine_import_and_shape_inference_load_no_numba(tmp_path):
    code = ("import sys\n"
            "import engine, engine.session, engine.trainer, engine.model, engine.fused, engine.project\n"
            "from engine.project import Project\n"
            "from resources import path\n"
            "p = Project.load(path('examples', 'digits-cnn.json'))\n"
            "assert engine.infer(p.graph)\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert _run(code, tmp_path) == "[]"


def test_the_main_window_with_its_example_loads_no_numba_pyarrow_or_torch(tmp_path):
    code = ("import sys\n"
            "from PySide6.QtWidgets import QApplication\n"
            "app = QApplication([])\n"
            "from gui.mainwindow import MainWindow, default_example\n"
            "w = MainWindow()\n"
            "assert w.open_path(default_example(), template=True)\n"
            "w.show(); app.processEvents()\n"
            "assert len(w.doc.graph.nodes) > 3\n"
            "w.experiments.tryit_dock.show(); app.processEvents()           # the Try-it panel is built now\n"
            "assert w.experiments.tryit_dock.widget() is w.experiments.tryit\n"
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    assert _run(code, tmp_path) == "[]"


def test_a_kernel_is_made_on_first_use_and_replaces_its_stand_ins(tmp_path):
    """The first call makes that kernel only (and what it calls), and puts numba's dispatcher wherever the engine's
    modules held the stand-in; kernels not used stay stand-ins until they are."""
    code = ("import sys\n"
            "import numpy as np\n"
            "from engine import _jit, blas, kernels\n"
            "from engine.layers import conv_kernels, conv_shift\n"
            "assert 'numba' not in sys.modules and isinstance(kernels.softmax_bwd, _jit.Kernel)\n"
            "assert isinstance(blas.gemm, _jit.Kernel) and conv_shift.gemm is blas.gemm    # one stand-in, two modules\n"
            "a = np.arange(12, dtype=np.float32).reshape(3, 4); b = np.ones((4, 2), np.float32)\n"
            "c = np.empty((3, 2), np.float32)\n"
            "blas.gemm(a, b, c)                                   # the first call imports numba, makes gemm\n"
            "from numba.core.registry import CPUDispatcher\n"
            "assert _jit.is_ready() and isinstance(blas.gemm, CPUDispatcher) and np.allclose(c, a @ b)\n"
            "assert conv_shift.gemm is blas.gemm                   # replaced where the other module held it\n"
            "assert isinstance(kernels.softmax_bwd, _jit.Kernel) and not _jit.made(kernels.softmax_bwd)\n"
            "assert isinstance(conv_kernels.conv_fwd, _jit.Kernel)\n"
            "kernels.softmax_bwd.signatures                       # any use makes it\n"
            "assert isinstance(kernels.softmax_bwd, CPUDispatcher)\n"
            "_jit.make_all()\n"
            "assert isinstance(conv_kernels.conv_fwd, CPUDispatcher) and not _jit._kernels\n"
            "print('ok')")
    assert _run(code, tmp_path) == "ok"


def test_a_kernel_kept_before_numba_works_inside_another_kernel(tmp_path):
    """A stand-in held outside the engine's modules (here a test's variable) types as its dispatcher."""
    code = ("import numpy as np\n"
            "from engine import blas\n"
            "gemm = blas.gemm                                      # the stand-in, kept\n"
            "from numba import njit\n"
            "@njit\n"
            "def f(a, b, c):\n"
            "    gemm(a, b, c)\n"
            "a = np.ones((2, 3)); b = np.ones((3, 4)); c = np.zeros((2, 4))\n"
            "f(a, b, c)\n"
            "assert (c == 3).all() and gemm.signatures\n"
            "print('ok')")
    assert _run(code, tmp_path) == "ok"
