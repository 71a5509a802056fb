"""The builder window: canvas in the middle, palette, inspector and summary docks, menus and toolbar."""
import json
from pathlib import Path

from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QApplication, QDockWidget, QLabel, QMainWindow, QMessageBox

from .autosave import Autosave
from .document import Document
from .experiments import Experiments
from .importer import OnnxOpener
from .inspector import Inspector
from .layout import best_wrap, layered
from .palette import PaletteDock
from .scene import GraphScene
from .style import apply_theme
from .summary import SummaryDock
from .training import TrainingDock
from .view import GraphView
from .window_files import FileActions, default_example, shipped  # noqa: F401  (default_example: tests, app)
from .window_help import HelpActions, UndoAnywhere, version  # noqa: F401  (version: tests)

CLIP_FORMAT = "layerboard-nodes"      # copied layers travel as JSON text with this "format" key


class MainWindow(FileActions, HelpActions, QMainWindow):
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
        self.scene.select(list(self.scene.nodes))          # one selectionChanged, not one per node

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
        self.scene.folds.restyle()
        self.scene._on_validated(self.doc.infos)
        self.summary.update_table(self.doc.infos)
        self.view.viewport().update()
