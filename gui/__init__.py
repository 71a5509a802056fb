"""The Layerboard desktop app (PySide6): the model builder window and the training dock."""
try:        # PySide6 6.12 on Python 3.11 loses references to None/True/False: see gui/training/refcount_guard.py
    from .training.refcount_guard import install as _install_guard
    _install_guard()
except Exception:  # noqa: BLE001  (the builder works without the training package)
    pass
