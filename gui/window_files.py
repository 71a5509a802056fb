"""The window's file actions: New, Open (a project, an .onnx model, a dropped file, a recent one), Save, Save as,
templates, and the weights and PyTorch exports; a mixin of MainWindow."""
from pathlib import Path

from PySide6.QtCore import QSettings
from PySide6.QtWidgets import QFileDialog, QMessageBox

from engine.errors import LayerboardError
from engine.project import Project
from resources import path as resource

from .dirs import last_dir, remember
from .document import clean_tmp
from .importer import defer, dropped_files
from .templates import AdviceDialog, TemplateDialog

MAX_RECENT = 8
FILTER = "Layerboard projects (*.json);;All files (*)"
OPEN_FILTER = ("Layerboard projects and ONNX models (*.json *.onnx);;Layerboard projects (*.json);;"
               "ONNX models (*.onnx);;All files (*)")


def default_example():
    """digits-cnn.json if it ships, else digits-mlp.json."""
    for name in ("digits-cnn.json", "digits-mlp.json"):
        if resource("examples", name).exists():
            return resource("examples", name)
    return None


def shipped(path):
    """True for a file inside the installed examples folder: it opens as an untitled copy and is never written."""
    try:
        return Path(path).resolve().is_relative_to(resource("examples").resolve())
    except (OSError, ValueError, TypeError):
        return False

class FileActions:
    """File ▸ New / Open / Save / Save as / Open recent / templates / exports, and dropping a file on the window."""

    def maybe_save(self):
        """Ask about unsaved changes; False if the user cancels."""
        if not self.doc.dirty:
            return True
        r = QMessageBox.question(self, "Unsaved changes", "Save the changes to this project first?",
                                 QMessageBox.StandardButton.Save | QMessageBox.StandardButton.Discard
                                 | QMessageBox.StandardButton.Cancel)
        if r == QMessageBox.StandardButton.Save:
            return self.save()
        return r == QMessageBox.StandardButton.Discard

    def _replace(self, project, trained=None):
        if self.doc.locked:
            self.show_message("stop the training run first")
            return False
        self.statusBar().clearMessage()               # nothing said about the last project stays
        self.doc.load(project, trained)
        self.view.zoom_to_fit()
        return True

    def new(self):
        if self.maybe_save() and self._replace(Project()):
            self.untitled_name = "model.json"

    def open_path(self, path, template=False):
        """Open a project; a bad file gives a dialog naming the problem and leaves the document untouched.

        template (and any file of the shipped examples): an untitled copy, so Save asks where.
        An .onnx model is imported in the background (True: the import started) and opens untitled."""
        if Path(path).suffix.lower() == ".onnx":
            return self.importer.start(path)
        template = template or shipped(path)
        try:
            project = Project.load(path)
        except LayerboardError as e:
            QMessageBox.warning(self, "Cannot open project", str(e))
            return False
        if template:
            ref = project.dataset
            if ref.get("path") and not Path(str(ref["path"])).expanduser().is_absolute():   # data shipped beside it
                project.dataset = dict(ref, path=str((Path(path).resolve().parent / ref["path"]).resolve()))
            project.path = None
            self.untitled_name = Path(path).name
            self.fit_layout(project)
        vertical = None if template else self.importer.place_unplaced(project)   # `layerboard import` writes none
        if not self._replace(project, None if template else self.doc.read_trained(project)):
            return False
        if vertical is not None:
            self.scene.set_vertical(vertical)
            self.view.zoom_to_fit()
        if not template:
            clean_tmp(path)
            self._add_recent(str(Path(path).resolve()))
        return True

    def open_dialog(self):
        if not self.maybe_save():
            return
        p, _ = QFileDialog.getOpenFileName(self, "Open project", str(self._dir()), OPEN_FILTER)
        if p:
            remember(p)
            self.open_path(p)

    def dragEnterEvent(self, e):
        if dropped_files(e.mimeData()):
            e.acceptProposedAction()
        else:
            e.ignore()

    dragMoveEvent = dragEnterEvent

    def dropEvent(self, e):
        files = dropped_files(e.mimeData())
        if not files:
            return e.ignore()
        e.acceptProposedAction()
        defer(lambda: self.maybe_save() and self.open_path(files[0]))   # no dialog inside the drag's own loop

    def save(self):
        if self.doc.project.path is None or shipped(self.doc.project.path):
            return self.save_as()
        return self._save_to(self.doc.project.path)

    def save_as(self):
        p, d = self.doc.project.path, self._dir()
        d = Path.home() if shipped(d / "x") else d        # never propose the installed examples' folder
        start = str(d / Path(p).name if p and shipped(p) else p or d / self.untitled_name)
        p, _ = QFileDialog.getSaveFileName(self, "Save project", start, FILTER)
        return self._save_to(remember(p)) if p else False

    def load_weights(self):
        from .training.weights import load_dialog
        if load_dialog(self, self.training.weights, self.doc.graph, self._dir()):
            self.training.loaded_weights(self.training.weights.name)
            self.training.show()

    def export_weights(self):
        from .training.weights import export_dialog
        start = self._dir() / f"{Path(self.doc.project.path or 'model').stem}.npz"
        p = export_dialog(self, self.training.weights, start)
        if p:
            remember(p)
            self.show_message(f"exported weights to {p}")

    def export_pytorch(self):
        from .training.weights import export_pytorch_dialog
        p = export_pytorch_dialog(self, self.training.weights, self.doc.project, self._dir())
        if p:
            self.show_message(f"exported a PyTorch project to {p}: python train.py or torchrun --nproc_per_node=N train.py")

    def _save_to(self, p):
        if shipped(p):
            QMessageBox.warning(self, "Cannot save project", f"{p} is one of the examples installed with Layerboard: "
                                "save your project in another folder")
            return False
        try:
            self.doc.save(p)
        except LayerboardError as e:
            QMessageBox.warning(self, "Cannot save project", str(e))
            return False
        self._add_recent(str(Path(p).resolve()))
        self.show_message(f"saved {p}")
        return True

    def _dir(self):
        """Where file dialogs start: the folder last used in one, else the latest project's."""
        recent = self.recent()
        return last_dir(Path(recent[0]).parent if recent else None)

    def recent(self):
        v = QSettings().value("recent", []) or []
        return [v] if isinstance(v, str) else list(v)

    def _add_recent(self, p):
        r = [p] + [x for x in self.recent() if x != p]
        QSettings().setValue("recent", r[:MAX_RECENT])

    def _fill_recent(self):
        self.recent_menu.clear()
        for p in self.recent():
            self.recent_menu.addAction(Path(p).name, lambda p=p: self.maybe_save() and self.open_path(p)) \
                .setStatusTip(p)
        if not self.recent():
            self.recent_menu.addAction("(none)").setEnabled(False)

    def new_from_template(self):
        d = TemplateDialog(self)
        if d.exec() and d.chosen() and self.maybe_save():
            self.open_path(resource("examples", d.chosen()), template=True)

    def which_model(self):
        d = AdviceDialog(self)
        if d.exec() and d.pick and self.maybe_save():
            if self.open_path(resource("examples", d.pick), template=True):
                self.doc.set_training("loss", d.loss)
