"""Installing on a Linux desktop: the README's library line covers what Qt's X11 plugin needs, and `layerboard`
says what is missing in one line instead of Qt aborting the process (issue 21 item 18)."""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from engine.cli import LINUX_LIBS

ROOT = Path(__file__).resolve().parent.parent
linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Qt's X11 plugin is Linux's")


def qt_dir():
    import importlib.util
    return Path(next(iter(importlib.util.find_spec("PySide6").submodule_search_locations))) / "Qt"


def run_app(env_changes, drop=()):
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(env_changes)
    return subprocess.run([sys.executable, "-m", "engine.cli"], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300)


def test_the_readme_shows_the_line_layerboard_prints():
    assert LINUX_LIBS in (ROOT / "README.md").read_text(encoding="utf-8")


BASE = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g", "libzstd1"}        # in every Debian/Ubuntu system


@linux
def test_the_line_names_every_library_the_xcb_plugin_and_its_qt_libraries_need():
    """readelf: the libraries libqxcb.so and the Qt libraries it loads link; dpkg: their packages."""
    if not (shutil.which("readelf") and shutil.which("ldd") and shutil.which("dpkg")):
        pytest.skip("needs readelf, ldd and dpkg (binutils on Debian/Ubuntu)")
    qt = qt_dir()
    plugin = qt / "plugins" / "platforms" / "libqxcb.so"
    ldd = subprocess.run(["ldd", str(plugin)], capture_output=True, text=True).stdout
    where = {ln.split()[0]: ln.split("=>")[1].split()[0] for ln in ldd.splitlines() if "=>" in ln}
    assert not [n for n, p in where.items() if p == "not"], ldd                  # "not found" on this machine
    ours = [plugin] + [Path(p) for p in where.values() if Path(p).resolve().is_relative_to(qt.resolve())]
    needed = set()
    for f in ours:
        dyn = subprocess.run(["readelf", "-d", str(f)], capture_output=True, text=True).stdout
        needed |= {ln.split("[")[1].rstrip("]") for ln in dyn.splitlines() if "(NEEDED)" in ln}
    system = sorted(n for n in needed if n in where and not Path(where[n]).resolve().is_relative_to(qt.resolve()))
    assert needed - set(where) <= {"ld-linux-x86-64.so.2", "ld-linux-aarch64.so.1"}   # only the loader unlisted
    assert "libxcb-icccm.so.4" in system and "libxcb-keysyms.so.1" in system
    listed = set(LINUX_LIBS.split()[3:])
    missing = {}
    for soname in system:
        out = subprocess.run(["dpkg", "-S", "*/" + Path(where[soname]).resolve().name], capture_output=True,
                             text=True).stdout                            # "pkg:arch, pkg2:arch: /path" lines
        pkgs = {p.strip().split(":")[0] for ln in out.splitlines() for p in ln.split(": ")[0].split(",")}
        if not pkgs & (listed | BASE):
            missing[soname] = sorted(pkgs)
    assert not missing, missing


@linux
def test_without_an_x_display_layerboard_says_so_instead_of_aborting():
    r = run_app({"QT_QPA_PLATFORM": "xcb"}, drop=("DISPLAY", "WAYLAND_DISPLAY"))
    assert r.returncode == 1, (r.returncode, r.stderr[-1500:])                  # Qt's abort: −6
    assert "DISPLAY is not set" in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


@linux
def test_a_missing_xcb_library_is_named_with_the_install_line(tmp_path):
    """A broken libxcb-icccm.so.4 found first on LD_LIBRARY_PATH stands for a missing one."""
    (tmp_path / "libxcb-icccm.so.4").write_bytes(b"")
    r = run_app({"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":99", "LD_LIBRARY_PATH": str(tmp_path)})
    assert r.returncode == 1, (r.returncode, r.stderr[-1500:])
    line, = r.stderr.strip().splitlines()
    assert "libxcb-icccm.so.4" in line and line.endswith(LINUX_LIBS)


def test_other_platforms_are_left_to_qt():
    from engine.cli import qt_problem
    assert qt_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert qt_problem({"XDG_SESSION_TYPE": "wayland", "WAYLAND_DISPLAY": "wayland-0"}) is None
