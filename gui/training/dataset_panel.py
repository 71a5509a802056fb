"""Dataset choice: built-ins, CSV / .npy / .npz / image-folder import, a preview of the first rows, target column."""
import csv
import json
import os
from pathlib import Path

import numpy as np
from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtGui import QIcon, QImage, QPixmap
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QPushButton,
                               QTableWidget, QTableWidgetItem, QVBoxLayout)

from engine.data import BUILTINS, load
from engine.errors import LayerboardError

from ..dirs import last_dir, remember
from .columns import ColumnTable, Loader
from .sequence_import import SequenceImport, sample_tokens
from .settings import HP, Editor

PREVIEW_ROWS, PREVIEW_COLS = 12, 10
TABLE_KINDS = ("csv", "parquet", "arrow")
BACKGROUND_BYTES = 32 << 20     # tables larger than this are read in a background thread with a progress bar
SLOW_BUILTINS = ("mnist",)      # built-in sets read from a file: in the background too
# settings that fit the built-in 2-D sets with a small MLP (the project defaults, lr 0.001 for 20 epochs, underfit)
SUGGESTED = {"xor": {"lr": 0.05, "epochs": 500}, "moons": {"lr": 0.01, "epochs": 100},
             "circles": {"lr": 0.01, "epochs": 150}, "spirals": {"lr": 0.01, "epochs": 400}}
TABLES = (".csv", ".tsv", ".parquet", ".pq", ".feather", ".arrow")     # read by the Arrow table loader
PREVIEW_TOKENS = 12     # words of a text sample in the preview table
TEXT_COL = 220          # pixels at most for that text column
THUMB = 28              # pixels: image samples are previewed as thumbnails, not as pixel columns


def csv_head(path, rows=PREVIEW_ROWS):
    """(header, first rows) of a CSV file as text, for the preview table."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        r = csv.reader(f)
        out = []
        for row in r:
            if any(c.strip() for c in row):
                out.append([c.strip() for c in row])
            if len(out) > rows:
                break
    if not out:
        raise LayerboardError(f"{path} is empty")
    return out[0], out[1:]


class DatasetPanel(QGroupBox):
    """Edits project.dataset through document.set_dataset; emits loaded(dataset or None) after each change."""

    loaded = Signal(object)

    def __init__(self, document, parent=None):
        super().__init__("Dataset", parent)
        self.doc = document
        self.cache = {}
        self.dataset = None
        box = QVBoxLayout(self)
        row = QHBoxLayout()
        self.choice = QComboBox()
        self.choice.addItems(list(BUILTINS))
        self.choice.setToolTip("Built-in datasets (no download)")
        self.choice.activated.connect(lambda _i: self.use_builtin(self.choice.currentText()))
        row.addWidget(QLabel("Built-in"))
        row.addWidget(self.choice, 1)
        box.addLayout(row)
        row = QHBoxLayout()
        self.import_btn = QPushButton("Import file…")
        self.import_btn.setToolTip("A CSV file with a header row, an .npz with arrays x and y, or an X .npy "
                                   "(you then pick the Y .npy); files are never unpickled")
        self.import_btn.clicked.connect(self._import_dialog)
        row.addWidget(self.import_btn)
        self.folder_btn = QPushButton("Image folder…")
        self.folder_btn.setToolTip("A folder with one sub-folder of images per class")
        self.folder_btn.clicked.connect(self._folder_dialog)
        row.addWidget(self.folder_btn)
        box.addLayout(row)
        form = QFormLayout()
        self.target = QComboBox()
        self.target.setToolTip("The CSV column holding the label or target value")
        self.target.activated.connect(self._target)
        form.addRow("Target column", self.target)
        self.split = Editor(HP["validation_split"])
        self.split.committed.connect(lambda k, v: self.doc.set_training(k, v))
        form.addRow("Validation split", self.split)
        box.addLayout(form)
        self.info = QLabel("")
        self.info.setWordWrap(True)
        box.addWidget(self.info)
        self.notes = QLabel("")                         # what loading skipped or filled (Dataset.notes)
        self.notes.setWordWrap(True)
        self.notes.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.notes.setStyleSheet("color: #a15c00;")
        self.notes.hide()
        box.addWidget(self.notes)
        self.table = QTableWidget()
        self.table.setMinimumHeight(110)
        self.table.setMaximumHeight(170)
        self.table.verticalHeader().setDefaultSectionSize(18)
        box.addWidget(self.table)
        self.loader = Loader()                          # large files: read in the background, cancellable
        self.loader.done.connect(self._loaded)
        box.addWidget(self.loader)
        self.columns = ColumnTable(document)            # a table's columns: type, role, missing values, chart
        self.columns.hide()
        box.addWidget(self.columns)
        self.sequences = SequenceImport(self)           # series / npz-with-lengths / text import and preview
        box.addWidget(self.sequences)
        self._shown = None
        document.changed.connect(self.refresh)
        self.refresh()

    # ---- edits ----
    def use_builtin(self, name):
        """Switch to a built-in set; a 2-D set also gets learning rate and epochs that fit it, unless the user
        changed them (one undo step for all)."""
        from engine.project import TRAINING
        t, ref = self.doc.project.training, {"kind": "builtin", "name": name}
        untouched = [{h.name: h.default for h in TRAINING if h.name in ("lr", "epochs")}] + list(SUGGESTED.values())
        fit = SUGGESTED.get(name) if {k: t.get(k) for k in ("lr", "epochs")} in untouched else None
        st = self.doc.undo_stack
        st.beginMacro(f"Use the built-in dataset {name}")
        try:
            self._set(ref)
            for k, v in (fit or {}).items():
                self.doc.set_training(k, v)
        finally:
            st.endMacro()

    def _set(self, ref):
        if ref != self.doc.project.dataset:
            self.doc.set_dataset(ref)

    def _rel(self, path):
        """A path relative to the project's folder when the file lies under it."""
        path = Path(path).resolve()
        base = Path(self.doc.project.base).resolve()
        try:
            return str(path.relative_to(base))
        except ValueError:
            return str(path)

    def import_file(self, path, y_path=None):
        """Use a CSV, .npz, or .npy file (with its targets y_path) as the project's dataset."""
        p = Path(path)
        suf = p.suffix.lower()
        if suf in TABLES or p.name.lower().endswith((".csv.gz", ".tsv.gz")):
            self._set({"kind": "csv", "path": self._rel(p)})
        elif suf == ".npz":
            self._set({"kind": "npz", "path": self._rel(p)})
        elif suf == ".npy":
            if y_path is None:
                raise LayerboardError(f"{p.name}: a .npy file holds the inputs only; choose the targets .npy too")
            y = Path(y_path)
            y = y.name if y.parent.resolve() == p.parent.resolve() else os.path.relpath(y, p.parent)
            self._set({"kind": "npy", "path": self._rel(p), "y": y})
        else:
            raise LayerboardError(f"{p.name}: import a table ({', '.join(TABLES)}), an .npz or an .npy file")

    def _import_dialog(self):
        path, _ = QFileDialog.getOpenFileName(self, "Import dataset", str(last_dir(self.doc.project.base)),
                                              "Data (*.csv *.tsv *.gz *.parquet *.feather *.arrow *.npz *.npy);;"
                                              "All files (*)")
        if not path:
            return
        remember(path)
        y = None
        if path.lower().endswith(".npy"):
            y, _ = QFileDialog.getOpenFileName(self, "Targets (y) for " + Path(path).name,
                                               str(Path(path).parent), "NumPy arrays (*.npy)")
            if not y:
                return
        try:
            self.import_file(path, y)
        except LayerboardError as e:
            self.info.setText(f"<span style='color:#b00'>{e}</span>")

    def _folder_dialog(self):
        path = QFileDialog.getExistingDirectory(self, "Image folder (one sub-folder per class)",
                                                str(last_dir(self.doc.project.base)))
        if path:
            remember(path)
            self.import_folder(path)

    def import_folder(self, path):
        """Use a folder of images, one sub-folder per class, as the project's dataset."""
        self._set({"kind": "folder", "path": self._rel(path)})

    def _target(self, _i):
        ref = dict(self.doc.project.dataset)
        ref["target"] = self.target.currentText()
        self._set(ref)

    # ---- display ----
    def refresh(self):
        ref = self.doc.project.dataset
        self.split.set_value(self.doc.project.training["validation_split"])
        key = json.dumps(ref, sort_keys=True)
        if key == self._shown:
            return
        self._shown = key
        if ref.get("kind") == "none":                     # an imported model: no data yet, not an error
            self._choose(ref)
            return
        if ref.get("kind") == "builtin":
            self.choice.setCurrentText(ref.get("name", ""))
        else:                                             # a file is active: the box must not still say "moons"
            self.choice.setPlaceholderText(f"(using {Path(str(ref.get('path', 'a file'))).name})")
            self.choice.setCurrentIndex(-1)
        self.target.setEnabled(ref.get("kind") in TABLE_KINDS)
        self.target.clear()
        self.table.clear()
        self.table.setRowCount(0)
        self.loader.cancel()
        try:
            big = self._large(ref)
            if ref.get("kind") in TABLE_KINDS and not (big and not str(ref["path"]).lower().endswith(".csv")):
                self._csv_preview(ref)            # the raw rows and columns even if the data cannot be used yet
            if big and key not in self.cache:
                self.info.setText(f"Reading <b>{Path(str(ref.get('path', ref.get('name', 'data')))).name}</b>…")
                self.columns.hide()
                self.dataset = None
                self.loaded.emit(None)
                self.loader.start(key, ref, self.doc.project.base)
                return
            ds = self.load(ref)
        except (LayerboardError, OSError, UnicodeDecodeError, csv.Error) as e:
            self._failed(e)
            return
        self._show(ref, ds)

    def _large(self, ref):
        """True for a table or series file large enough to be read in the background, and for the built-in
        sets read from a file (MNIST: half a second that the window's start-up does not wait for)."""
        if ref.get("kind") == "builtin" and ref.get("name") in SLOW_BUILTINS:
            return True
        if ref.get("kind") not in ("csv", "parquet", "arrow", "series") or "path" not in ref:
            return False
        p = Path(str(ref["path"])).expanduser()
        p = p if p.is_absolute() else Path(self.doc.project.base) / p
        return p.is_file() and p.stat().st_size > BACKGROUND_BYTES

    def _loaded(self, key, result):
        """A background read finished (or failed, or was cancelled) for the reference with this key."""
        self.loader.hide()
        if key != self._shown:                            # the reference changed meanwhile
            return
        if isinstance(result, Exception):
            self._failed(result)
            self._shown = None                            # Cancel, then the same reference again: read again
            return
        self.cache = {key: result}
        self._show(self.doc.project.dataset, result)

    def _choose(self, ref):
        """The project has no data yet: say what to choose, check nothing against the model."""
        from engine.data.dataset import choose_text
        self.choice.setPlaceholderText("(choose data)")
        self.choice.setCurrentIndex(-1)
        for w in (self.target, self.table):
            w.clear()
        self.target.setEnabled(False)
        self.table.setRowCount(0)
        self.table.setColumnCount(0)                     # no preview columns left from the data before
        self.loader.cancel()
        self.columns.hide()
        self.dataset = None
        text = choose_text(ref)
        self.info.setText(f"{text[:1].upper()}{text[1:]}: a built-in set, Import file… or Image folder…")
        self.loaded.emit(None)

    def _failed(self, e):
        self.dataset = None
        self.show_notes([])
        self.info.setText(f"<span style='color:#b00'>{e}</span>")
        self.columns.hide()
        self.loaded.emit(None)

    def _show(self, ref, ds):
        self.dataset = ds
        if ds.report:
            self.columns.show_report(ds, ref)
        self.columns.setVisible(bool(ds.report))
        what = {"binary": "binary classification", "multiclass": f"{ds.n_classes} classes",
                "regression": "regression"}[ds.task]
        self.info.setText(f"<b>{ds.name}</b>: {len(ds)} samples of shape {tuple(ds.x.shape[1:])}, {what}")
        self.show_notes(getattr(ds, "notes", None) or [])
        if ref.get("kind") not in TABLE_KINDS:
            self._array_preview(ds)
        self.loaded.emit(ds)

    def show_notes(self, notes):
        """One line per loader note (skipped images, unlabelled rows, filled cells); hidden when there are none."""
        self.notes.setText("\n".join(f"⚠ {n}" for n in notes))
        self.notes.setToolTip("What reading this dataset skipped, left out or filled in")
        self.notes.setVisible(bool(notes))

    def load(self, ref):
        key = json.dumps(ref, sort_keys=True)
        if key not in self.cache:
            self.cache = {key: load(ref, self.doc.project.base)}      # keep one: datasets can be large
        return self.cache[key]

    def _csv_preview(self, ref):
        p = Path(ref["path"]).expanduser()
        p = p if p.is_absolute() else Path(self.doc.project.base) / p
        from engine.data.table import read
        if p.suffix.lower() == ".csv":
            header, rows = csv_head(p)
        else:                                             # Parquet, Arrow, gzip: the parsed (cached) table
            t = read(p, ref.get("delimiter"))
            header = t.column_names
            rows = [["" if v is None else str(v) for v in r.values()] for r in t.slice(0, PREVIEW_ROWS).to_pylist()]
        self.target.addItems(header)
        self.target.setCurrentText(ref.get("target", header[-1]))
        self._fill(header, rows)

    def _array_preview(self, ds):
        if ds.x.ndim == 4 and ds.x.shape[1] in (1, 3):               # (N, C, H, W) images
            return self._image_preview(ds)
        if getattr(ds, "vocab", None):                                # text: the words, not their ids
            return self._text_preview(ds)
        x = np.asarray(ds.x[:PREVIEW_ROWS]).reshape(min(len(ds), PREVIEW_ROWS), -1)    # (rows, features)
        cols = min(x.shape[1], PREVIEW_COLS)
        header = [f"x{j}" for j in range(cols)] + (["…"] if x.shape[1] > cols else []) + ["y"]
        y = ds.y[:PREVIEW_ROWS]
        rows = []
        for i in range(len(x)):
            r = [f"{v:.4g}" for v in x[i, :cols]] + (["…"] if x.shape[1] > cols else [])
            yi = np.ravel(y[i])[:PREVIEW_COLS]                         # one target, or one per step (sequences)
            r.append(" ".join(ds.classes[int(v)] for v in yi) if ds.task != "regression" and ds.classes else
                     ", ".join(f"{v:.4g}" for v in yi))
            rows.append(r)
        self._fill(header, rows)

    def _text_preview(self, ds):
        """One row per sample: its valid tokens as text, and its label."""
        rows = []
        for i in range(min(len(ds), PREVIEW_ROWS)):
            tok = sample_tokens(ds, i, limit=PREVIEW_TOKENS)
            words = " ".join(tok[1]) + (" …" if tok[0] > len(tok[1]) else "") if tok else ""
            yi = np.ravel(ds.y[i])[:PREVIEW_COLS]
            rows.append([words, " ".join(ds.classes[int(v)] for v in yi) if ds.task != "regression" and ds.classes
                         else ", ".join(f"{v:.4g}" for v in yi)])
        self._fill(["text", "y"], rows)
        self.table.setColumnWidth(0, min(self.table.columnWidth(0), TEXT_COL))      # the label stays in view

    def _image_preview(self, ds):
        """One row per sample: a thumbnail and its class."""
        n = min(len(ds), PREVIEW_ROWS)
        self._fill(["image", "y"], [["", ds.classes[int(y)] if ds.classes else f"{float(y):.4g}"] for y in ds.y[:n]])
        t = self.table
        t.setIconSize(QSize(THUMB, THUMB))
        for i in range(n):
            t.item(i, 0).setIcon(QIcon(thumbnail(ds.x[i])))
            t.setRowHeight(i, THUMB + 4)
        t.setColumnWidth(0, max(THUMB + 12, t.horizontalHeader().sectionSizeHint(0)))

    def _fill(self, header, rows):
        t = self.table
        t.clear()
        t.setColumnCount(len(header))
        t.setRowCount(len(rows))
        t.setHorizontalHeaderLabels(header)
        for i, r in enumerate(rows):
            for j, v in enumerate(r[:len(header)]):
                t.setItem(i, j, QTableWidgetItem(v))
        t.resizeColumnsToContents()


def thumbnail(img):
    """A (C, H, W) image (C = 1 or 3, any value range) as a THUMB-pixel QPixmap, contrast-stretched."""
    a = np.asarray(img, np.float64)
    lo, hi = a.min(), a.max()
    a = (255 * (a - lo) / (hi - lo if hi > lo else 1)).astype(np.uint8)
    a = np.ascontiguousarray(a.transpose(1, 2, 0))                    # (H, W, C)
    h, w, c = a.shape
    fmt = QImage.Format.Format_Grayscale8 if c == 1 else QImage.Format.Format_RGB888
    q = QImage(a.data, w, h, w * c, fmt).copy()                      # copy: the array goes away
    return QPixmap.fromImage(q).scaled(THUMB, THUMB, Qt.AspectRatioMode.KeepAspectRatio,
                                       Qt.TransformationMode.FastTransformation)

