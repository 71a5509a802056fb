import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import tempfile  # noqa: E402

# runs recorded by tests go to a throw-away database, never the user's history
os.environ.setdefault("LAYERBOARD_RUNS", os.path.join(tempfile.mkdtemp(prefix="layerboard-runs-"), "runs.sqlite"))
