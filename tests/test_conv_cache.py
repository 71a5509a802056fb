"""numba's kernel cache works for a read-only install: engine/__init__ points it at a per-user directory."""
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import os, sys
real = os.access
os.access = lambda p, m, **k: False if (m == os.W_OK and p.endswith('engine')) else real(p, m, **k)
sys.path.insert(0, {root!r})
import engine
from numba.core import config
print(os.environ.get('NUMBA_CACHE_DIR', ''))
print(config.CACHE_DIR)
"""


def _probe(tmp_path, env_extra):
    env = {k: v for k, v in os.environ.items() if k not in ("NUMBA_CACHE_DIR", "XDG_CACHE_HOME")}
    env.update(HOME=str(tmp_path), **env_extra)
    out = subprocess.run([sys.executable, "-c", PROBE.format(root=str(ROOT))], env=env, capture_output=True,
                         text=True, timeout=120, check=True).stdout.split("\n")
    return out[0], out[1]


def test_read_only_install_caches_in_the_users_directory(tmp_path):
    env_dir, numba_dir = _probe(tmp_path, {})
    want = str(tmp_path / ".cache" / "layerboard" / "numba")
    assert env_dir == want and numba_dir == want


def test_xdg_cache_home_and_an_explicit_choice_are_respected(tmp_path):
    assert _probe(tmp_path, {"XDG_CACHE_HOME": str(tmp_path / "xdg")})[1] == str(tmp_path / "xdg" / "layerboard" / "numba")
    assert _probe(tmp_path, {"NUMBA_CACHE_DIR": str(tmp_path / "mine")})[1] == str(tmp_path / "mine")


STEPS = """
import sys
sys.path.insert(0, {root!r})
import numpy as np
import engine
assert engine.__file__.startswith({root!r}), engine.__file__
from engine import Graph
from engine.data import Dataset
from engine.model import Model
from engine.project import training_config
from engine.trainer import Trainer
g = Graph()
g.chain(("x", "Input", {{"shape": [3]}}), ("d", "Dense", {{"units": 4}}), ("r", "ReLU", {{}}),
        ("o", "Dense", {{"units": 1}}))
rng = np.random.default_rng(0)
x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 1))
thetas = []
for fast in (True, False):
    m = Model(g, dtype=np.float64, seed=1)
    tr = Trainer(m, training_config({{"loss": "mse", "optimizer": "adam", "lr": 0.1}}),
                 Dataset(x, y, "regression", "t"))
    assert (tr.fast is not None) == fast or not fast
    if not fast:
        tr.fast = None
    for _ in range(3):
        tr.train_step(x, y)
    thetas.append(m.theta.copy())
print(float(np.abs(thetas[0] - thetas[1]).max()), float(thetas[1].sum()))
"""


def test_editing_an_inlined_kernel_invalidates_the_fused_kernels_cache(tmp_path):
    """fused.train_step inlines optimizers._adam: editing _adam alone must not leave stale fused code."""
    import shutil
    root = tmp_path / "src"
    shutil.copytree(ROOT / "engine", root / "engine", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["HOME"] = str(tmp_path)

    def run():
        out = subprocess.run([sys.executable, "-c", STEPS.format(root=str(root))], env=env, capture_output=True,
                             text=True, timeout=600, cwd=tmp_path)
        assert out.returncode == 0, out.stderr
        diff, total = map(float, out.stdout.split())
        return diff, total

    d0, t0 = run()                                          # compiles and caches every kernel
    assert d0 < 1e-12
    opt = root / "engine" / "optimizers.py"
    src = opt.read_text()
    old = "theta[i] -= step * m[i] / (np.sqrt(v[i] * ic2) + eps_)"
    assert old in src
    opt.write_text(src.replace(old, "theta[i] -= 0.5 * step * m[i] / (np.sqrt(v[i] * ic2) + eps_)"))
    d1, t1 = run()                                          # _adam changed; fused.py did not
    assert t1 != t0                                         # the edit took effect on the per-layer path
    assert d1 < 1e-12, f"fused and per-layer weights differ by {d1}: stale cached fused kernel"
