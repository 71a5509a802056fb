import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import atexit  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

# the data cache (engine/data/cache.py) of the tests' own files goes to a throwaway folder, not ~/.cache
if "LAYERBOARD_CACHE" not in os.environ:
    os.environ["LAYERBOARD_CACHE"] = tempfile.mkdtemp(prefix="layerboard-test-cache-")
    atexit.register(shutil.rmtree, os.environ["LAYERBOARD_CACHE"], True)

# runs recorded by tests go to a throwaway database, never the user's history
if "LAYERBOARD_RUNS" not in os.environ:
    _runs = tempfile.mkdtemp(prefix="layerboard-runs-")
    os.environ["LAYERBOARD_RUNS"] = os.path.join(_runs, "runs.sqlite")
    atexit.register(shutil.rmtree, _runs, True)

# qtbot.waitUntil's limit in the GUI tests: a wait ends as soon as its condition holds, so this only stops a
# hung test; it is no speed check (speed is measured in benchmarks/, never asserted in tests)
HANG_MS = 600_000
