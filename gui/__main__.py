"""`python -m gui [PROJECT.json]`: the window, as `layerboard` without a command (one line when it cannot start)."""
import sys

from engine.cli_gui import gui

sys.exit(gui(sys.argv[1] if len(sys.argv) > 1 else None))
