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
