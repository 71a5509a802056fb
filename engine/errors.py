"""Error types the engine raises for user mistakes; each message names what and where."""


class LayerboardError(Exception):
    """Base class for errors caused by user input (printed as one line, never a traceback)."""


class ProjectError(LayerboardError):
    """A project file is malformed, of a newer version, or inconsistent."""


class ShapeError(LayerboardError):
    """A layer cannot accept the shapes it receives; `fix` names a one-click repair if one exists."""

    def __init__(self, message, fix=None):
        super().__init__(message)
        self.fix = fix


class ConfigError(LayerboardError):
    """A hyperparameter value is of the wrong type or out of range."""


class DataError(LayerboardError):
    """A dataset file or array cannot be used (names the file and line)."""


class TrainingError(LayerboardError):
    """Training cannot start or had to stop (divergence, mismatched data)."""
