import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import tempfile  # noqa: E402

# the data cache (engine/data/cache.py) of the tests' own files goes to a throwaway folder, not ~/.cache
os.environ.setdefault("LAYERBOARD_CACHE", tempfile.mkdtemp(prefix="layerboard-test-cache-"))
