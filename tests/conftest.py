import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

# qtbot.waitUntil's limit in the GUI tests: a wait ends as soon as its condition holds, so this only stops a
# hung test; it is no speed check (speed is measured in benchmarks/, never asserted in tests)
HANG_MS = 600_000
