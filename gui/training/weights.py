"""Weights in the window: export the last trained (or loaded) model; load weights the next runs start from."""
import json
from pathlib import Path

from PySide6.QtWidgets import QDialog, QFileDialog, QMessageBox

from engine.errors import LayerboardError
from engine.model import Model
from engine.torch_export import export_project, from_state_dict, is_state_dict
from engine.weights import export, load

SAVE_FILTER = "NumPy weights (*.npz);;safetensors (*.safetensors);;ONNX model (*.onnx)"
LOAD_FILTER = "Layerboard weights or PyTorch checkpoints (*.npz *.safetensors)"
NOTHING = "Nothing to export yet: train the model or load weights first."


def signature(graph):
    """What weights depend on: node names, types, hyperparameters and edges (not canvas positions)."""
    return json.dumps([[(n, v.type, v.config) for n, v in graph.nodes.items()],
                       [e.to_dict() for e in graph.edges]], sort_keys=True, default=str)


class Weights:
    """The dock's model to export and the weights its next runs start from (None: a fresh initialisation)."""

    def __init__(self):
        self.model = None             # trained by the last run, or built from loaded weights
        self.start = None             # {'node/param': array} loaded by the user
        self.name, self._sig = "", None

    def trained(self, model):
        """A run finished: its model is what Export writes."""
        self.model = model

    def load(self, path, graph):
        """Check a .npz/.safetensors file against graph (a clear error if it does not fit) and keep it.

        A PyTorch checkpoint of the exported model.py (names like 'fc1.weight') is converted first."""
        arrays, _ = load(path)
        model = Model(graph.copy())
        if is_state_dict(arrays):
            arrays = from_state_dict(model, arrays, where=Path(path).name)
        model.set_weights(arrays, where=f"the weights in {Path(path).name}")
        self.model, self.start, self.name, self._sig = model, arrays, Path(path).name, signature(graph)

    def graph_changed(self, graph):
        """Forget loaded weights the edited graph no longer matches; True when that happened."""
        if self.start is None or signature(graph) == self._sig:
            return False
        self.start = None
        return True

    def export(self, path):
        if self.model is None:
            raise LayerboardError(NOTHING)
        export(self.model, path)


def export_dialog(parent, weights, start_dir=""):
    """Ask where, then write the model; the format follows the extension (npz, safetensors, onnx)."""
    if weights.model is None:
        QMessageBox.information(parent, "Export weights", NOTHING)
        return None
    path, chosen = QFileDialog.getSaveFileName(parent, "Export weights", str(start_dir), SAVE_FILTER)
    if not path:
        return None
    if not Path(path).suffix:                           # no extension typed: the chosen filter's
        path += "." + chosen.split("*.")[1].rstrip(")")
    try:
        weights.export(path)
    except LayerboardError as e:
        QMessageBox.warning(parent, "Cannot export weights", str(e))
        return None
    return path


def load_dialog(parent, weights, graph, start_dir=""):
    """Ask for a weights file and load it against graph; a file that does not fit is refused with the reason."""
    path, _ = QFileDialog.getOpenFileName(parent, "Load weights", str(start_dir), LOAD_FILTER)
    if not path:
        return None
    try:
        weights.load(path, graph)
    except LayerboardError as e:
        QMessageBox.warning(parent, "Cannot load weights", str(e))
        return None
    return path


class FolderDialog(QFileDialog):
    """Choose a folder, existing or new: a typed path that does not exist yet is created on accept."""

    def __init__(self, parent, title, start=""):
        super().__init__(parent, title, str(start))
        self.setOption(QFileDialog.Option.DontUseNativeDialog)        # native dialogs refuse new folders
        self.setFileMode(QFileDialog.FileMode.Directory)
        self.setOption(QFileDialog.Option.ShowDirsOnly)
        self.setLabelText(QFileDialog.DialogLabel.FileName, "Folder (created if new):")

    def accept(self):
        files = self.selectedFiles()
        p = Path(files[0]) if files else None
        if p is not None and not p.exists():
            try:
                p.mkdir(parents=True)
            except OSError as e:
                QMessageBox.warning(self, self.windowTitle(), f"Cannot create the folder {p}: {e.strerror or e}")
                return
        super().accept()


def ask_folder(parent, title, start=""):
    """The chosen (possibly just created) folder, or None if cancelled."""
    d = FolderDialog(parent, title, start)
    return d.selectedFiles()[0] if d.exec() == QDialog.DialogCode.Accepted and d.selectedFiles() else None


def export_pytorch_dialog(parent, weights, project, start_dir=""):
    """Ask for a folder (a new one is created), then write the PyTorch project there (trained weights when
    they fit the graph)."""
    out = ask_folder(parent, "Export PyTorch project", start_dir)
    if not out:
        return None
    m = weights.model
    w = m.weights() if m is not None and signature(m.graph) == signature(project.graph) else None
    try:
        _, limits = export_project(project, out, w)
    except LayerboardError as e:
        QMessageBox.warning(parent, "Cannot export a PyTorch project", str(e))
        return None
    if limits:
        QMessageBox.information(parent, "Export PyTorch project",
                                f"Wrote model.py and its weights; train.py cannot yet reproduce {limits} "
                                "and refuses to run.")
    return out
