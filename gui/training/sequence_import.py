"""Sequence data import for the dataset panel: a time series, variable-length sequences (.npz) or text, previewed."""
import csv
import gzip
import zipfile
from pathlib import Path

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import (QComboBox, QFileDialog, QFormLayout, QGroupBox, QHBoxLayout, QLabel, QListWidget,
                               QListWidgetItem, QPushButton, QSpinBox, QStackedWidget, QVBoxLayout, QWidget)

from engine.errors import LayerboardError

from .views.base import restyle

KINDS = {"series": "Time series (CSV)", "npz": "Sequences (.npz with lengths)", "text": "Text (CSV)",
         "pairs": "Sentence pairs (CSV/TSV), for translation"}
PLOT_ROWS = 2000         # rows of the series drawn at most
SHOWN_TOKENS = 60


def csv_columns(path, limit=PLOT_ROWS):
    """(header, {column: float array or None when not numeric}) of a CSV's first `limit` data rows."""
    opener = gzip.open if str(path).lower().endswith(".gz") else open
    sep = "\t" if str(path).lower().removesuffix(".gz").endswith((".tsv", ".tab")) else ","
    with opener(path, "rt", newline="", encoding="utf-8-sig") as f:
        rows = [r for _, r in zip(range(limit + 1), (r for r in csv.reader(f, delimiter=sep)
                                                      if any(c.strip() for c in r)))]
    if not rows:
        raise LayerboardError(f"{path} is empty")
    header, data = [h.strip() for h in rows[0]], rows[1:limit + 1]
    cols = {}
    for j, h in enumerate(header):
        try:
            cols[h] = np.array([float(r[j]) for r in data])
        except (ValueError, IndexError):
            cols[h] = None
    return header, cols


def npz_keys(path):
    """Array names in an .npz without loading them (never unpickled)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [n[:-4] for n in z.namelist() if n.endswith(".npy")]
    except (OSError, zipfile.BadZipFile) as e:
        raise LayerboardError(f"{Path(path).name} is not a readable .npz file: {e}") from None


def sample_tokens(ds, i, limit=SHOWN_TOKENS):
    """'tok tok …' of sample i of a dataset with a vocabulary (valid steps only), or None."""
    vocab = getattr(ds, "vocab", None)
    if not vocab or ds.x.ndim > 3 or (ds.x.ndim == 3 and ds.x.shape[2] != 1):
        return None
    lens = getattr(ds, "lengths", None)
    n = int(lens[i]) if lens is not None else ds.x.shape[1]
    ids = ds.x[i].reshape(-1)[:n].astype(np.int64)
    words = [vocab[j] if 0 <= j < len(vocab) else "?" for j in ids[:limit]]
    return n, words


class SequenceImport(QGroupBox):
    """Builds a series / npz / text dataset reference from a file and hands it to the panel (undoable)."""

    def __init__(self, panel, parent=None):
        super().__init__("Sequences: time series, .npz with lengths, text", parent)
        self.panel = panel
        self.path = None
        self.header, self.cols = [], {}
        self.setCheckable(True)                         # folded away until someone imports sequences
        self.setChecked(False)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(4, 4, 4, 4)
        self.body = QWidget()
        self.body.setVisible(False)
        self.toggled.connect(self.body.setVisible)
        outer.addWidget(self.body)
        box = QVBoxLayout(self.body)
        box.setContentsMargins(0, 0, 0, 0)
        row = QHBoxLayout()
        self.kind = QComboBox()
        for k, text in KINDS.items():
            self.kind.addItem(text, k)
        self.kind.currentIndexChanged.connect(self._kind)
        row.addWidget(self.kind, 1)
        self.file_btn = QPushButton("File…")
        self.file_btn.clicked.connect(self._file_dialog)
        row.addWidget(self.file_btn)
        box.addLayout(row)
        self.file_label = QLabel("no file chosen")
        self.file_label.setWordWrap(True)
        box.addWidget(self.file_label)
        self.pages = QStackedWidget()
        self.pages.addWidget(self._series_page())
        self.pages.addWidget(self._npz_page())
        self.pages.addWidget(self._text_page())
        self.pages.addWidget(self._pairs_page())
        box.addWidget(self.pages)
        self.use_btn = QPushButton("Use these sequences")
        self.use_btn.setEnabled(False)
        self.use_btn.clicked.connect(self.use)
        box.addWidget(self.use_btn)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(120)
        self.plot.setMaximumHeight(170)
        self.plot.setLabel("bottom", "row (time)")
        self.curve = self.plot.plot([], [], pen=pg.mkPen("#0072B2", width=1))
        self.window = pg.LinearRegionItem(movable=False, brush=pg.mkBrush(230, 159, 0, 70))
        self.target_mark = pg.ScatterPlotItem(size=9, brush=pg.mkBrush("#D55E00"), pen=None, symbol="x")
        self.plot.addItem(self.window)
        self.plot.addItem(self.target_mark)
        box.addWidget(self.plot)
        self.tokens = QLabel("")
        self.tokens.setWordWrap(True)
        self.tokens.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        box.addWidget(self.tokens)
        panel.loaded.connect(self.show_dataset)
        self._kind()

    def showEvent(self, e):
        restyle(self)                                   # the plot in the window's theme colours
        super().showEvent(e)

    def changeEvent(self, e):
        if e.type() == QEvent.Type.StyleChange:
            restyle(self)
        super().changeEvent(e)

    # ---- pages ----
    def _series_page(self):
        w = QWidget()
        f = QFormLayout(w)
        self.s_target = QComboBox()
        self.s_target.currentTextChanged.connect(lambda _t: self.preview())
        f.addRow("Target column", self.s_target)
        self.s_features = QListWidget()
        self.s_features.setMaximumHeight(80)
        f.addRow("Features", self.s_features)
        self.s_window, self.s_horizon, self.s_at = QSpinBox(), QSpinBox(), QSpinBox()
        self.s_window.setRange(1, 100000)
        self.s_window.setValue(24)
        self.s_horizon.setRange(1, 100000)
        self.s_at.setRange(0, 0)
        self.s_at.setToolTip("Which window the preview marks (its first row)")
        for s in (self.s_window, self.s_horizon, self.s_at):
            s.valueChanged.connect(lambda _v: self.preview())
        f.addRow("Window (rows)", self.s_window)
        f.addRow("Horizon (rows ahead)", self.s_horizon)
        f.addRow("Preview window at row", self.s_at)
        return w

    def _npz_page(self):
        w = QWidget()
        f = QFormLayout(w)
        self.n_x, self.n_y, self.n_len = QComboBox(), QComboBox(), QComboBox()
        f.addRow("Inputs x (N, T, F) or (N, T) ids", self.n_x)
        f.addRow("Targets y", self.n_y)
        f.addRow("Lengths (N,)", self.n_len)
        return w

    def _text_page(self):
        w = QWidget()
        f = QFormLayout(w)
        self.t_text, self.t_target, self.t_level = QComboBox(), QComboBox(), QComboBox()
        self.t_level.addItems(["word", "char"])
        self.t_len, self.t_vocab = QSpinBox(), QSpinBox()
        self.t_len.setRange(1, 100000)
        self.t_len.setValue(200)
        self.t_vocab.setRange(3, 10_000_000)
        self.t_vocab.setValue(20000)
        f.addRow("Text column", self.t_text)
        f.addRow("Label column", self.t_target)
        f.addRow("Tokens", self.t_level)
        f.addRow("Max length", self.t_len)
        f.addRow("Vocabulary size", self.t_vocab)
        return w

    def _pairs_page(self):
        w = QWidget()
        f = QFormLayout(w)
        self.p_source, self.p_target, self.p_tokens = QComboBox(), QComboBox(), QComboBox()
        self.p_tokens.addItems(["char", "word"])
        self.p_tokens.setToolTip("char: every character is a token (dates, codes, short texts); word: words and "
                                 "punctuation marks")
        f.addRow("Source column", self.p_source)
        f.addRow("Target column", self.p_target)
        f.addRow("Tokens", self.p_tokens)
        return w

    def _kind(self, _i=None):
        self.pages.setCurrentIndex(self.kind.currentIndex())
        self.plot.setVisible(self.kind.currentData() == "series")
        if self.path is not None:
            self.open(self.path)

    # ---- file ----
    def _file_dialog(self):
        filt = "NumPy archives (*.npz)" if self.kind.currentData() == "npz" else \
            "CSV files (*.csv *.csv.gz *.tsv *.tsv.gz)"
        path, _ = QFileDialog.getOpenFileName(self, KINDS[self.kind.currentData()], str(self.panel.doc.project.base),
                                              f"{filt};;All files (*)")
        if path:
            self.open(path)

    def open(self, path):
        """Read a file's columns (CSV) or array names (.npz) into the form; errors go to the label."""
        self.path = Path(path)
        kind = self.kind.currentData()
        try:
            if kind == "npz":
                keys = npz_keys(self.path)
                for combo, want in ((self.n_x, "x"), (self.n_y, "y"), (self.n_len, "lengths")):
                    combo.clear()
                    combo.addItems(keys)
                    if want in keys:
                        combo.setCurrentText(want)
                self.header, self.cols = [], {}
            else:
                self.header, self.cols = csv_columns(self.path)
                self._fill_csv(kind)
        except (LayerboardError, OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
            self.file_label.setText(f"<span style='color:#b00'>{e}</span>")
            self.use_btn.setEnabled(False)
            return
        self.file_label.setText(self.path.name)
        self.use_btn.setEnabled(True)
        self.preview()

    def _fill_csv(self, kind):
        numeric = [h for h in self.header if self.cols[h] is not None]
        if kind == "series":
            self.s_target.blockSignals(True)
            self.s_target.clear()
            self.s_target.addItems(numeric)
            self.s_target.blockSignals(False)
            self.s_features.clear()
            for h in numeric:
                it = QListWidgetItem(h)
                it.setFlags(it.flags() | Qt.ItemFlag.ItemIsUserCheckable)
                it.setCheckState(Qt.CheckState.Checked)
                self.s_features.addItem(it)
        elif kind == "pairs":
            for combo, want, j in ((self.p_source, "source", 0), (self.p_target, "target", 1)):
                combo.clear()
                combo.addItems(self.header)
                combo.setCurrentText(want if want in self.header else self.header[min(j, len(self.header) - 1)])
        else:
            text = [h for h in self.header if self.cols[h] is None] or self.header
            for combo, items in ((self.t_text, self.header), (self.t_target, self.header)):
                combo.clear()
                combo.addItems(items)
            self.t_text.setCurrentText(text[0])
            self.t_target.setCurrentText(next((h for h in reversed(self.header) if h != text[0]), self.header[-1]))

    # ---- the reference ----
    def reference(self):
        """The dataset reference the form describes (what project.dataset will hold)."""
        kind = self.kind.currentData()
        ref = {"kind": kind, "path": self.panel._rel(self.path)}
        if kind == "series":
            feats = [self.s_features.item(i).text() for i in range(self.s_features.count())
                     if self.s_features.item(i).checkState() == Qt.CheckState.Checked]
            ref.update(target=self.s_target.currentText(), features=feats, window=self.s_window.value(),
                       horizon=self.s_horizon.value())
        elif kind == "npz":
            ref.update(x=self.n_x.currentText(), y=self.n_y.currentText(), lengths=self.n_len.currentText())
        elif kind == "pairs":
            ref.update(source=self.p_source.currentText(), target=self.p_target.currentText(),
                       tokens=self.p_tokens.currentText())
        else:
            ref.update(text=self.t_text.currentText(), target=self.t_target.currentText(),
                       level=self.t_level.currentText(), max_len=self.t_len.value(), vocab=self.t_vocab.value())
        return ref

    def use(self):
        """Make the form's reference the project's dataset (one undoable change); the panel loads and previews it."""
        if self.path is None:
            return
        ref = self.reference()
        if ref["kind"] == "series" and not ref["features"]:
            self.file_label.setText("<span style='color:#b00'>choose at least one feature column</span>")
            return
        try:
            self.panel._set(ref)
        except LayerboardError as e:
            self.file_label.setText(f"<span style='color:#b00'>{e}</span>")

    # ---- preview ----
    def preview(self):
        """The series with the chosen window (shaded) and its target (×), from the file's first rows."""
        if self.kind.currentData() != "series" or not self.cols:
            return
        y = self.cols.get(self.s_target.currentText())
        if y is None:
            return
        w, hz = self.s_window.value(), self.s_horizon.value()
        last = max(len(y) - w - hz, 0)
        self.s_at.blockSignals(True)
        self.s_at.setRange(0, last)
        self.s_at.blockSignals(False)
        a = self.s_at.value()
        self.curve.setData(np.arange(len(y)), y)
        self.window.setRegion((a, a + w - 1))
        t = a + w - 1 + hz
        self.target_mark.setData([t], [y[t]] if t < len(y) else [np.nan])
        self.plot.setLabel("left", self.s_target.currentText())
        self.tokens.setText(f"window rows {a}…{a + w - 1} (shaded) → target row {t} (×), "
                            f"{self.s_target.currentText()} {hz} row{'s' * (hz != 1)} after the window"
                            + ("" if len(y) >= w + hz else "; the file's first rows hold no whole window"))

    def show_reference(self, ref):
        """Fill the form from the project's sequence dataset reference (e.g. an opened example) and preview it."""
        kind = ref.get("kind")
        if kind not in KINDS or not ref.get("path"):
            return
        path = Path(ref["path"]).expanduser()
        path = path if path.is_absolute() else Path(self.panel.doc.project.base) / path
        self.kind.blockSignals(True)
        self.kind.setCurrentIndex(list(KINDS).index(kind))
        self.kind.blockSignals(False)
        self.pages.setCurrentIndex(self.kind.currentIndex())
        self.plot.setVisible(kind == "series")
        self.open(path)
        if kind == "series" and self.cols:
            self.s_target.setCurrentText(ref.get("target", ""))
            feats = set(ref.get("features", []))
            for i in range(self.s_features.count()):
                it = self.s_features.item(i)
                it.setCheckState(Qt.CheckState.Checked if it.text() in feats else Qt.CheckState.Unchecked)
            self.s_window.setValue(int(ref.get("window", 24)))
            self.s_horizon.setValue(int(ref.get("horizon", 1)))
        elif kind == "npz":
            for combo, key in ((self.n_x, "x"), (self.n_y, "y"), (self.n_len, "lengths")):
                combo.setCurrentText(ref.get(key, key))
        elif kind == "text" and self.header:
            self.t_text.setCurrentText(ref.get("text", ""))
            self.t_target.setCurrentText(ref.get("target", ""))
            self.t_level.setCurrentText(ref.get("level", "word"))
            self.t_len.setValue(int(ref.get("max_len", 200)))
            self.t_vocab.setValue(int(ref.get("vocab", 20000)))
        elif kind == "pairs" and self.header:
            self.p_source.setCurrentText(ref.get("source", "source"))
            self.p_target.setCurrentText(ref.get("target", "target"))
            self.p_tokens.setCurrentText(ref.get("tokens", "char"))
        self.preview()

    def clear(self):
        """Nothing imported: the form forgets the last file and folds away."""
        self.path, self.header, self.cols = None, [], {}
        self.file_label.setText("no file chosen")
        self.use_btn.setEnabled(False)
        self.curve.setData([], [])
        self.target_mark.setData([], [])
        self.tokens.setText("")
        for c in (self.s_target, self.n_x, self.n_y, self.n_len, self.t_text, self.t_target, self.p_source,
                  self.p_target):
            c.blockSignals(True)
            c.clear()
            c.blockSignals(False)
        self.s_features.clear()
        self.setChecked(False)

    def show_dataset(self, ds):
        """After the panel loaded a dataset (None: it could not): a sequence reference fills the form, unfolded,
        with the tokens of a sample (vocabulary); any other reference clears it."""
        ref = self.panel.doc.project.dataset
        if ref.get("kind") in KINDS:
            self.show_reference(ref)
        else:
            self.clear()
        self.setChecked(ref.get("kind") in KINDS)
        if ds is None:
            return
        tok = sample_tokens(ds, 0)
        if tok is not None:
            n, words = tok
            more = " …" if n > len(words) else ""
            self.tokens.setText(f"sample 0 ({n} tokens, vocabulary {len(ds.vocab)}): "
                                + " · ".join(words) + more + _target_tokens(ds))
        elif getattr(ds, "lengths", None) is not None:
            lens = np.asarray(ds.lengths)
            self.tokens.setText(f"{len(lens)} sequences, lengths {lens.min()}…{lens.max()} "
                                f"(mean {lens.mean():.1f}) of at most {ds.x.shape[1]} steps")
        if self.tokens.text():                          # e.g. a built-in set of token sequences
            self.setChecked(True)


def _target_tokens(ds, limit=SHOWN_TOKENS):
    """' → tok · tok … (target vocabulary V)' of sample 0 of a sentence-pairs dataset, else ''."""
    tv = getattr(ds, "target_vocab", None)
    if not tv:
        return ""
    n = int(ds.target_lengths[0])
    return (f" → {' · '.join(tv[int(j)] for j in ds.y[0, :min(n, limit)])} (target vocabulary {len(tv)})")
