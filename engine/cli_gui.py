"""`layerboard` with no command: open the window, or say in one line why it cannot start."""
import sys

LINUX_LIBS = ("sudo apt install libegl1 libgl1 libfontconfig1 libfreetype6 libdbus-1-3 libglib2.0-0 libx11-6 "
              "libx11-xcb1 libxcb1 libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 "
              "libxcb-render0 libxcb-render-util0 libxcb-shape0 libxcb-shm0 libxcb-sync1 libxcb-util1 libxcb-xfixes0 "
              "libxcb-xkb1 libxkbcommon0 libxkbcommon-x11-0")


def qt_problem(env=None):
    """Why Qt's X11 platform plugin cannot start here, as one line with the fix, or None (checked before Qt loads:
    Qt itself aborts the process, naming a library that is not the missing one)."""
    import ctypes
    import importlib.util
    import os
    from pathlib import Path
    env = os.environ if env is None else env
    chosen = env.get("QT_QPA_PLATFORM", "").split(":")[0]
    wayland = env.get("XDG_SESSION_TYPE") == "wayland" and env.get("WAYLAND_DISPLAY")
    if not sys.platform.startswith("linux") or (chosen or ("wayland" if wayland else "xcb")) != "xcb":
        return None
    spec = importlib.util.find_spec("PySide6")
    plugin = Path(next(iter(spec.submodule_search_locations or []), "")) / "Qt/plugins/platforms/libqxcb.so" \
        if spec else None
    if plugin is None or not plugin.is_file():
        return None
    try:
        ctypes.CDLL(str(plugin))                  # loads every library it needs; the error names a missing one
    except OSError as e:
        missing = str(e).split(": ")[0].replace(str(plugin), "libqxcb.so")
        return f"Qt's X11 platform plugin cannot load {missing}; install the libraries it needs: {LINUX_LIBS}"
    if not env.get("DISPLAY"):
        return "no X display (DISPLAY is not set); start it in a desktop session"
    return None


def gui(project=None):
    """Open the window (on `project`, a path, when given); 1 with a one-line reason if it cannot start."""
    problem = qt_problem()
    if problem:
        print(f"layerboard: the window cannot start: {problem}", file=sys.stderr)
        return 1
    try:
        from gui.app import main as gui_main
    except ImportError as e:
        print(f"layerboard: the window cannot start ({e}); the commands summary|train|predict|export|import-weights work headless",
              file=sys.stderr)
        return 1
    return gui_main(project=project)
