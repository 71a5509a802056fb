"""The engine is usable without Qt: importing all of it loads no PySide6 module."""
import subprocess
import sys


def test_engine_imports_no_qt():
    code = ("import pkgutil, importlib, sys, engine\n"
            "for m in pkgutil.walk_packages(engine.__path__, 'engine.'): importlib.import_module(m.name)\n"
            "bad = [m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'pyqtgraph', 'gui')]\n"
            "print(len(sys.modules)); assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert int(r.stdout) > 50          # the walk really imported the engine's modules
