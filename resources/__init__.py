"""Files shipped with Layerboard: example projects, data, styles and icons."""
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def path(*parts):
    """Absolute path of a shipped resource, e.g. path("examples", "xor.json")."""
    return ROOT.joinpath(*parts)
