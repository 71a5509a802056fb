"""The Layerboard desktop app (PySide6): the model builder window and the training dock."""
