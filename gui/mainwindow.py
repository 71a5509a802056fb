"""The builder window: canvas in the middle, palette, inspector and summary docks, menus and toolbar."""
import json
import re
from importlib import metadata
from pathlib import Path

from PySide6.QtCore import QEvent, QObject, QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (QAbstractSpinBox, QApplication, QDialog, QDialogButtonBox, QDockWidget, QFileDialog,
                               QLabel, QLineEdit, QMainWindow, QMessageBox, QTextBrowser, QVBoxLayout)

from engine.errors import LayerboardError
from engine.project import Project
from resources import path as resource

from .autosave import Autosave
from .dirs import last_dir, remember
from .document import Document, clean_tmp
from .experiments import Experiments
from .importer import OnnxOpener, defer, dropped_files
from .inspector import Inspector
from .layout import best_wrap, layered
from .palette import PaletteDock
from .scene import GraphScene
from .style import apply_theme
from .summary import SummaryDock
from .templates import AdviceDialog, TemplateDialog
from .training import TrainingDock
from .view import GraphView

CLIP_FORMAT = "layerboard-nodes"      # copied layers travel as JSON text with this "format" key
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


def version():
    """The installed package's version, else the one in pyproject.toml beside the sources."""
    try:
        return metadata.version("layerboard")
    except metadata.PackageNotFoundError:
        p = Path(__file__).resolve().parent.parent / "pyproject.toml"
        m = re.search(r'^version\s*=\s*"([^"]+)"', p.read_text(encoding="utf-8"), re.M) if p.exists() else None
        return m.group(1) if m else "unknown"


class UndoAnywhere(QObject):
    """Ctrl+Z / redo reach the window's undo stack while a text or number field has focus, unless the field
    has its own typing to undo (a field would otherwise swallow the shortcut)."""

    def eventFilter(self, obj, e):
        if e.type() == QEvent.Type.ShortcutOverride:
            undo, redo = e.matches(QKeySequence.StandardKey.Undo), (
                e.matches(QKeySequence.StandardKey.Redo) or QKeySequence(e.keyCombination()) == QKeySequence("Ctrl+Y"))
            if undo or redo:
                w = QApplication.focusWidget()
                le = w if isinstance(w, QLineEdit) else (w.findChild(QLineEdit) if isinstance(w, QAbstractSpinBox)
                                                         else None)
                if le is not None and not (le.isUndoAvailable() if undo else le.isRedoAvailable()):
                    e.ignore()
                    return True               # not taken by the field: the window's shortcut runs
        return False


SHORTCUT_HELP = (("Drag from the palette / double-click", "add a layer (at a free place)"),
                 ("Drag from an output port to an input port", "connect two layers"),
                 ("Middle button or Space + drag", "pan the canvas"), ("Mouse wheel", "zoom the canvas"))


class MainWindow(QMainWindow):
    def __init__(self, doc=None, autosave_ms=3000, autosave_dir=None, training=True, remember=False):
        super().__init__()
        self.setObjectName("layerboard")
        self.setDockOptions(QMainWindow.DockOption.AnimatedDocks | QMainWindow.DockOption.AllowNestedDocks)
        self.remember = remember              # window size and dock layout kept in QSettings between sessions
        self.untitled_name = "model.json"     # what Save as proposes for an untitled project (a template's name)
        self._undo_filter = UndoAnywhere(self)
        QApplication.instance().installEventFilter(self._undo_filter)
        self.doc = doc or Document()
        self.scene = GraphScene(self.doc, self)
        self.view = GraphView(self.scene)
        self.setCentralWidget(self.view)
        self.palette = PaletteDock(self)
        self.inspector = Inspector(self.doc, self)
        self.summary = SummaryDock(self.doc, self)
        self.addDockWidget(Qt.DockWidgetArea.LeftDockWidgetArea, self.palette)
        self.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.inspector)
        self.addDockWidget(Qt.DockWidgetArea.BottomDockWidgetArea, self.summary)
        self.training = None
        if training:
            self.training = TrainingDock(self.doc, self)
            self.add_dock(self.training, Qt.DockWidgetArea.BottomDockWidgetArea)
            self.splitDockWidget(self.summary, self.training, Qt.Orientation.Horizontal)
        self.status = QLabel()
        self.statusBar().addPermanentWidget(self.status)
        self.autosave = Autosave(self.doc, autosave_ms, autosave_dir, self)
        self.importer = OnnxOpener(self)      # .onnx files open through it, in a thread
        self.setAcceptDrops(True)             # a .json or .onnx file dropped on the window opens
        self._actions()
        self.palette.add_requested.connect(lambda t: self.view.add_layer(t))
        self.scene.message.connect(self.show_message)
        self.inspector.message.connect(self.show_message)
        self.doc.error.connect(self.show_message)
        self.scene.selectionChanged.connect(self._selection)
        self.scene.node_activated.connect(lambda n: (self.inspector.show(), self.inspector.raise_()))
        self.summary.node_clicked.connect(self._focus_node)
        self.doc.dirty_changed.connect(self.setWindowModified)
        self.doc.path_changed.connect(lambda p: self._title())
        self.doc.validated.connect(self._status)
        self.doc.locked_changed.connect(self._locked)
        self.resize(1360, 820)
        self.resizeDocks([self.palette, self.inspector], [190, 290], Qt.Orientation.Horizontal)
        self.resizeDocks([self.summary], [240 if self.training is None else 400], Qt.Orientation.Vertical)
        if self.training is not None:
            self.resizeDocks([self.summary, self.training], [560, 800], Qt.Orientation.Horizontal)
        from .modes import Modes
        self.modes = Modes(self)                      # View ▸ Build / Train: the canvas gets the room it needs
        self._title()
        self._status(self.doc.infos)
        self._default_state = self.saveState()
        if remember:
            self.restore_layout()
        self.modes.start()                            # Build unless the user last chose Train

    # ---- layout kept between sessions ----
    def restore_layout(self):
        """The window size and dock layout of the last session, if there is one."""
        s = QSettings()
        geo, state = s.value("window/geometry"), s.value("window/state")
        if geo is not None:
            self.restoreGeometry(geo)
        if state is not None:
            self.restoreState(state)

    def save_layout(self):
        s = QSettings()
        s.setValue("window/geometry", self.saveGeometry())
        s.setValue("window/state", self.saveState())

    def reset_layout(self):
        """Every dock back in its default place (and shown), as in a fresh window."""
        for d in self.findChildren(QDockWidget):
            d.setFloating(False)
        self.restoreState(self._default_state)
        for d in self.findChildren(QDockWidget):
            d.show()
        self.modes.sync()

    # ---- building ----
    def add_dock(self, widget, area=Qt.DockWidgetArea.RightDockWidgetArea):
        """Add a QDockWidget (e.g. the training dock) and list it in the View menu."""
        if not widget.objectName():
            widget.setObjectName(type(widget).__name__)
        self.addDockWidget(area, widget)
        if hasattr(self, "view_menu"):
            self.view_menu.addAction(widget.toggleViewAction())
        return widget

    def _act(self, menu, text, slot, keys=None, tip=None, toolbar=False):
        a = QAction(text, self)
        if keys is not None:
            a.setShortcuts(keys if isinstance(keys, list) else [QKeySequence(keys)])
        a.setStatusTip(tip or text.replace("&", "").rstrip("…"))
        a.triggered.connect(slot)
        menu.addAction(a)
        if toolbar:
            self.toolbar.addAction(a)
        return a

    def _actions(self):
        K, mb = QKeySequence.StandardKey, self.menuBar()
        self.toolbar = self.addToolBar("Main")
        self.toolbar.setObjectName("toolbar")
        self.toolbar.setMovable(False)
        f = mb.addMenu("&File")
        self._act(f, "&New", self.new, K.New, toolbar=True)
        self._act(f, "New from &template…", self.new_from_template)
        self._act(f, "&Which model?…", self.which_model)
        self._act(f, "&Open…", self.open_dialog, K.Open, toolbar=True)
        self.recent_menu = f.addMenu("Open &recent")
        self.recent_menu.aboutToShow.connect(self._fill_recent)
        self._act(f, "&Save", self.save, K.Save, toolbar=True)
        self._act(f, "Save &as…", self.save_as, K.SaveAs)
        if self.training is not None:
            f.addSeparator()
            self._act(f, "&Load weights…", self.load_weights, tip="Start the next training run from a weights file")
            self._act(f, "&Export weights…", self.export_weights, "Ctrl+E",
                      tip="Write the trained model as .npz, .safetensors or .onnx")
            self._act(f, "Export &PyTorch project…", self.export_pytorch,
                      tip="Write model.py, its weights, a DistributedDataParallel train.py and the data to a folder")
        f.addSeparator()
        self._act(f, "&Quit", self.close, K.Quit)
        self.toolbar.addSeparator()
        e = mb.addMenu("&Edit")
        self.undo_action = self.doc.undo_stack.createUndoAction(self, "&Undo")
        self.undo_action.setShortcuts(K.Undo)
        self.redo_action = self.doc.undo_stack.createRedoAction(self, "&Redo")
        self.redo_action.setShortcuts([QKeySequence(K.Redo), QKeySequence("Ctrl+Y")])
        for a in (self.undo_action, self.redo_action):
            e.addAction(a)
        st = self.doc.undo_stack
        for text, slot, sig, now in (("Undo", st.undo, st.canUndoChanged, st.canUndo()),
                                     ("Redo", st.redo, st.canRedoChanged, st.canRedo())):
            short = QAction(text, self)                 # the menu item says what; the button stays short
            short.triggered.connect(slot)
            short.setEnabled(now)
            sig.connect(short.setEnabled)
            self.toolbar.addAction(short)
        e.addSeparator()
        self._act(e, "&Copy", self.copy, K.Copy)
        self._act(e, "&Paste", self.paste, K.Paste)
        self._act(e, "&Delete", self.delete, [QKeySequence(K.Delete), QKeySequence("Backspace")], toolbar=True)
        self._act(e, "Select &all", self.select_all, K.SelectAll)
        from .grouping_menu import install as install_blocks
        install_blocks(self, e)                       # Group as block, Ungroup, Fold, Rename, Save to palette
        self.toolbar.addSeparator()
        v = self.view_menu = mb.addMenu("&View")
        self._act(v, "Zoom &in", lambda: self.view.zoom(1.25), K.ZoomIn)
        self._act(v, "Zoom &out", lambda: self.view.zoom(0.8), K.ZoomOut)
        self._act(v, "Zoom to &fit", self.view.zoom_to_fit, "Ctrl+0", toolbar=True)
        self._act(v, "Auto-layout left → right", lambda: self.auto_layout(False), "Ctrl+L", toolbar=True)
        self._act(v, "Auto-layout top → bottom", lambda: self.auto_layout(True), "Ctrl+Shift+L")
        self._act(v, "&Find a layer…", self.view.find, K.Find, tip="Type part of a layer's name or type to go to it")
        self.minimap_action = self._act(v, "&Minimap", lambda on: self.view.minimap.set_enabled(on),
                                        tip="An overview in the canvas corner while the graph is larger than the view")
        self.minimap_action.setCheckable(True)
        self.minimap_action.setChecked(True)
        self.dark_action = self._act(v, "&Dark theme", self.toggle_theme)
        self.dark_action.setCheckable(True)
        self.dark_action.setChecked(QSettings().value("theme", "light") == "dark")
        v.addSeparator()
        self._act(v, "&Reset layout", self.reset_layout, tip="Put every panel back in its default place")
        v.addSeparator()
        for d in (self.palette, self.inspector, self.summary) + ((self.training,) if self.training else ()):
            v.addAction(d.toggleViewAction())
        self.experiments = Experiments(self)          # Tools: run history, search, Try it, Evaluate
        self.experiments.install(mb)
        h = mb.addMenu("&Help")
        self._act(h, "&Keyboard shortcuts", self.show_shortcuts, tip="Every keyboard shortcut of the window")
        self._act(h, "&Formulas", self.show_formulas, tip="How every number the app shows is computed")
        self._act(h, "&About Layerboard", self.about)

    def about(self):
        QMessageBox.about(self, "About Layerboard", f"<b>Layerboard {version()}</b><br>Build a network by connecting "
                          "layers; shapes, parameters and MACs update as you edit. Drag layers from the palette; "
                          "connect an output to an input; train on real data and export the model.")

    def shortcuts(self):
        """[(keys, what)] for every action with a shortcut, then the mouse gestures."""
        rows, seen = [], set()
        for a in self.findChildren(QAction):
            keys = ", ".join(k.toString(QKeySequence.SequenceFormat.NativeText) for k in a.shortcuts())
            what = a.text().replace("&", "").rstrip("…")
            if keys and (keys, what) not in seen:
                seen.add((keys, what))
                rows.append((keys, what))
        return rows + list(SHORTCUT_HELP)

    def _text_dialog(self, title, html):
        d = QDialog(self)
        d.setWindowTitle(title)
        lay = QVBoxLayout(d)
        t = QTextBrowser()
        t.setHtml(html)
        lay.addWidget(t)
        bb = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        bb.rejected.connect(d.reject)
        lay.addWidget(bb)
        d.resize(640, 520)
        d.show()
        self._help_dialog = d
        return d

    def show_shortcuts(self):
        rows = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;&nbsp;{w}</td></tr>" for k, w in self.shortcuts())
        return self._text_dialog("Keyboard shortcuts", f"<table>{rows}</table>")

    def show_formulas(self):
        from .summary import formulas_html
        return self._text_dialog("Formulas", formulas_html())

    # ---- status ----
    def _title(self):
        p = self.doc.project.path
        self.setWindowTitle(f"{Path(p).name if p else 'untitled'}[*] — Layerboard")
        self.setWindowModified(self.doc.dirty)

    def _status(self, infos):
        errs = sum(1 for i in infos.values() if i.error)
        params = sum(i.params for i in infos.values())
        self.status.setText(f"{len(infos)} layers · {params:,} parameters · " +
                            (f"{errs} error(s)" if errs else "no errors") +
                            (" · locked while training" if self.doc.locked else ""))

    def show_message(self, text):
        self.statusBar().showMessage(text, 8000)

    def _selection(self):
        names = self.scene.selected_names()
        self.inspector.show_nodes(names)

    def _focus_node(self, name):
        self.view.focus_node(name)

    def _locked(self, on):
        self.show_message("training: the model is locked" if on else "training finished: you can edit again")
        self._status(self.doc.infos)

    # ---- files ----
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

    def ask_training_close(self):
        """'keep', 'discard' or 'cancel': what to do with the run that trains while the window closes."""
        box = QMessageBox(QMessageBox.Icon.Question, "Training is running",
                          "A training run is in progress. Stop it and close the window?", parent=self)
        keep = box.addButton("Stop and keep the run", QMessageBox.ButtonRole.AcceptRole)
        discard = box.addButton("Stop and discard the run", QMessageBox.ButtonRole.DestructiveRole)
        box.addButton(QMessageBox.StandardButton.Cancel)
        box.setDefaultButton(keep)
        box.exec()
        return {keep: "keep", discard: "discard"}.get(box.clickedButton(), "cancel")

    def closeEvent(self, e):
        t = self.training
        if t is not None and t.running and not t.job.stopping:
            answer = self.ask_training_close()
            if answer == "cancel":
                return e.ignore()
            t.stop_for_close(keep=answer == "keep")   # a kept run is recorded in the project: Save is offered next
        if not self.maybe_save():
            return e.ignore()
        if self.remember:
            self.save_layout()                        # before any dock closes: a closed dock would be saved hidden
        if t is not None:
            t.shutdown()
        QApplication.instance().removeEventFilter(self._undo_filter)
        self.autosave.clean_exit()
        e.accept()

    # ---- edit ----
    def _focus_is_text(self):
        from PySide6.QtWidgets import QAbstractSpinBox, QLineEdit
        return isinstance(QApplication.focusWidget(), (QLineEdit, QAbstractSpinBox))

    def copy(self):
        if QApplication.focusWidget() is self.summary.table:
            return self.summary.table.copy()
        names = self.scene.selected_names()
        if names:       # plain text, not a Python-made QMimeData (the clipboard would free it after Python exits)
            QApplication.clipboard().setText(json.dumps({"format": CLIP_FORMAT, **self.doc.copy_data(names)}))

    def paste(self):
        try:
            data = json.loads(QApplication.clipboard().text())
        except ValueError:
            return
        if not isinstance(data, dict) or data.get("format") != CLIP_FORMAT:
            return
        names = self.scene.attempt(self.doc.paste, data)
        if names:
            self.scene.select(names)

    def delete(self):
        if not self._focus_is_text():
            self.scene.delete_selected()

    def select_all(self):
        for it in self.scene.nodes.values():
            it.setSelected(True)

    def auto_layout(self, vertical):
        self.scene.set_vertical(vertical)
        vp = self.view.viewport().size()
        from engine.blocks import Quotient
        from .grouping import positions                 # a folded block is one node of the layout
        wrap = best_wrap(Quotient.folded(self.doc.graph), vertical, max(vp.width(), 400), max(vp.height(), 300))
        self.scene.attempt(self.doc.move_nodes, positions(self.doc.graph, vertical, wrap=wrap))
        self.view.zoom_to_fit()

    def fit_layout(self, project):
        """Lay a not-yet-loaded project out so it fits the canvas (long chains wrap into rows)."""
        vp = self.view.viewport().size()
        w, h = max(vp.width(), 600), max(vp.height(), 400)
        pos = layered(project.graph, False, wrap=best_wrap(project.graph, False, w, h))
        for n, (x, y) in pos.items():
            project.graph.nodes[n].meta.update(x=x, y=y)

    def toggle_theme(self):
        name = "dark" if self.dark_action.isChecked() else "light"
        QSettings().setValue("theme", name)
        apply_theme(QApplication.instance(), name)
        for it in self.scene.nodes.values():
            it._state = None
            for p in it.in_ports + [it.out_port]:
                p.restyle()
        for it in self.scene.edges.values():
            it.restyle()
        self.scene._on_validated(self.doc.infos)
        self.summary.update_table(self.doc.infos)
        self.view.viewport().update()
