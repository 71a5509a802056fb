"""The model summary: per-layer shape, params, MACs (and receptive field/stride for conv nets) with totals."""
from PySide6.QtCore import QAbstractTableModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QColor, QFont, QKeySequence
from PySide6.QtWidgets import QAbstractItemView, QApplication, QDockWidget, QTableView

from engine.errors import LayerboardError
from engine.layers import REGISTRY, create
from engine.receptive import explain
from engine.shapes import shown, table_head, table_row, totals

from .style import theme

KEYS = ("shape", "params", "macs", "field", "stride")
LABELS = {"shape": "Output shape", "params": "Parameters", "macs": "MACs per sample", "field": "Receptive field",
          "stride": "Effective stride"}
COLUMN = {"output shape": "shape", "params": "params", "MACs": "macs", "receptive field": "field",
          "eff. stride": "stride"}
LOSSES = {"bce": "L = −(1/n)·Σ[y·log p + (1 − y)·log(1 − p)]  (binary cross-entropy, p = sigmoid output)",
          "cce": "L = −(1/n)·Σ log p_y  (categorical cross-entropy, p_y = softmax probability of the true class)",
          "mse": "L = (1/n)·Σ(ŷ − y)²  (mean squared error)"}
EVR = "EVR_k = λ_k / Σ_j λ_j  (the share of the activations' variance along principal axis k; λ: covariance eigenvalues)"


def node_formulas(graph, infos, name):
    """{key: one line} for a node whose shape is known: Layer.formulas plus the receptive field and stride."""
    info, node = infos.get(name), graph.nodes.get(name)
    if info is None or node is None or not info.ok:
        return {}
    ins = [infos[s] for s in graph.inputs_of(name)]
    try:
        layer = create(node.type, name, node.config)
        f = dict(layer.formulas([i.shape for i in ins]))
    except (LayerboardError, ValueError, TypeError, KeyError):
        return {}
    f.update(explain(info, layer, layer.kernel_stride(), ins))
    return f


def formula_lines(graph, infos, name):
    """The node's formulas as tooltip lines ("Parameters: C_out·C_in·K_h·K_w + C_out = 16·1·3·3 + 16 = 160")."""
    f = node_formulas(graph, infos, name)
    return [f"{LABELS[k]}: {f[k]}" for k in KEYS if k in f]


def formulas_html():
    """Help ▸ Formulas: every number the app shows and how it is computed, in general form."""
    rows = [("Output shape", "Dense: (…, F_in) → (…, units).  Conv2D: H_out = ⌊(H + 2P − K)/S⌋ + 1, the same for W; "
             "with dilation d: ⌊(H + 2P − d·(K − 1) − 1)/S⌋ + 1 (Conv1D on L, Conv3D on D, H, W).  "
             "ConvTranspose2D: H_out = (H − 1)·S − 2P + d·(K − 1) + P_out + 1 (ConvTranspose1D on L, ConvTranspose3D on "
             "D, H, W).  "
             "Pooling: H_out = ⌊(H + 2P − d·(K − 1) − 1)/S⌋ + 1 (⌈⌉ in ceil mode).  Flatten: C·H·W values in one axis."),
            ("Parameters", "Dense: F_in·units + units.  Conv2D: C_out·C_in·K_h·K_w + C_out; with g groups "
             "C_out·(C_in/g)·K_h·K_w + C_out.  BatchNorm: 2·C "
             "(γ, β; running statistics are not trained).  Activations, pooling, reshaping: 0."),
            ("MACs per sample", "Dense: F_in·units (T·F_in·units on a sequence).  Conv2D: C_out·H_out·W_out·(C_in/g)·K_h·K_w.  "
             "Average pooling: C·H_out·W_out·K_h·K_w.  BatchNorm: one per value."),
            ("Receptive field", "r = r_in + (K − 1)·j_in: the input positions (pixels, steps) one output value depends on, "
             "per axis (r = 1 at the Input); K = d·(K − 1) + 1 for a dilated kernel, ⌊(K − 1)·c/S⌋·d/c + 1 with "
             "c = gcd(d, S) for a transposed one, 1 (nearest) or 2 (bilinear) for upsampling, and ⌈(K − 1)·j_in⌉ "
             "after an upsampling."),
            ("Effective stride", "j = j_in·S: how far apart, in input positions, neighbouring output values look "
             "(j = j_in/S after a transposed convolution or upsampling by S)."),
            ("Loss", "<br>".join(LOSSES.values())),
            ("Regression metrics", "RMSE = √(Σ(ŷ − y)²/n);  MAE = Σ|ŷ − y|/n;  R² = 1 − Σ(ŷ − y)²/Σ(y − ȳ)²"),
            ("Explained variance ratio", EVR),
            ("Accuracy", "correct predictions / samples (the class with the largest output; p > 0.5 for one sigmoid)")]
    per = "".join(f"<li><b>{t}</b>: {REGISTRY[t].doc}</li>" for t in REGISTRY)
    return ("<p>Hover a number on the canvas or in the summary to see its formula with that layer's own numbers.</p>"
            "<table cellspacing=6>" + "".join(f"<tr><td valign=top><b>{a}</b></td><td>{b}</td></tr>" for a, b in rows) +
            f"</table><h4>Layers</h4><ul>{per}</ul>")


class SummaryModel(QAbstractTableModel):
    """The rows of engine.shapes.table(infos), each made when the view first asks for it (a 5,000-node graph
    formats only the rows on screen after an edit); resetting it is cheap."""

    def __init__(self):
        super().__init__()
        self.head, self.items, self.total, self.errors = [], [], [], {}
        self.graph, self.infos, self._formulas, self._rows, self.spatial = None, {}, {}, {}, False

    def set_infos(self, infos, graph=None):
        self.beginResetModel()
        self.items = list(infos.values())
        self.spatial = any(shown(i) for i in self.items)
        self.head = table_head(self.spatial)
        total = ["total", "", ""] + [f"{t:,}" for t in totals(infos)]
        self.total = total + [""] * (len(self.head) - len(total))
        self.errors = {i.name: i.error for i in self.items if i.error}
        self.graph, self.infos, self._formulas, self._rows = graph, infos, {}, {}
        self.endResetModel()

    def row(self, r):
        """Row r as text (the last row is the totals)."""
        if r == len(self.items):
            return self.total
        if r not in self._rows:
            self._rows[r] = table_row(self.items[r], self.spatial)
        return self._rows[r]

    def name(self, r):
        """The node name of row r (None for the totals row)."""
        return self.items[r].name if 0 <= r < len(self.items) else None

    def formula(self, name, column):
        """The tooltip formula for a cell (computed when first asked for)."""
        if self.graph is None or column not in COLUMN:
            return None
        if name not in self._formulas:
            self._formulas[name] = node_formulas(self.graph, self.infos, name)
        return self._formulas[name].get(COLUMN[column])

    def rowCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() or not self.head else len(self.items) + 1

    def columnCount(self, parent=QModelIndex()):
        return 0 if parent.isValid() else len(self.head)

    def headerData(self, section, orientation, role=Qt.ItemDataRole.DisplayRole):
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            return self.head[section]
        return None

    def data(self, index, role=Qt.ItemDataRole.DisplayRole):
        r, c = index.row(), index.column()
        row = self.row(r)
        last = r == len(self.items)
        if role == Qt.ItemDataRole.DisplayRole:
            return row[c]
        if role == Qt.ItemDataRole.TextAlignmentRole and c >= 3:
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.FontRole and last:
            f = QFont()
            f.setBold(True)
            return f
        if role == Qt.ItemDataRole.ForegroundRole and not last and row[0] in self.errors:
            return QColor(theme["error"])
        if role == Qt.ItemDataRole.ToolTipRole and not last and row[0] in self.errors:
            return self.errors[row[0]]
        if role == Qt.ItemDataRole.ToolTipRole and not last:
            return self.formula(row[0], self.head[c])
        return None


class SummaryTable(QTableView):
    """Read-only table; Ctrl+C copies the selected rows (or everything) as tab-separated text."""

    def keyPressEvent(self, e):
        if e.matches(QKeySequence.StandardKey.Copy):
            self.copy()
            return e.accept()
        super().keyPressEvent(e)

    def copy(self):
        QApplication.clipboard().setText(self.as_text(selected_only=True))

    def as_text(self, selected_only=False):
        m = self.model()
        rows_ = sorted({i.row() for i in self.selectedIndexes()}) if selected_only else []
        rows_ = rows_ or range(m.rowCount())
        lines = ["\t".join(m.head)] + ["\t".join(m.row(r)) for r in rows_]
        return "\n".join(lines) + "\n"


class SummaryDock(QDockWidget):
    """Mirrors Document.validated; clicking a row asks to select that node."""

    node_clicked = Signal(str)

    def __init__(self, doc, parent=None):
        super().__init__("Model summary", parent)
        self.setObjectName("summary")
        self.doc = doc
        self.table = SummaryTable()
        self.model = SummaryModel()
        self.table.setModel(self.model)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.verticalHeader().setDefaultSectionSize(22)
        self.table.horizontalHeader().setStretchLastSection(False)
        self.table.horizontalHeader().setResizeContentsPrecision(60)
        self.setToolTip("Hover a number for its formula; Ctrl+C copies the selected rows (or all) as tab-separated text")
        self.setWidget(self.table)
        self.table.clicked.connect(lambda ix: self._clicked(ix.row()))
        doc.validated.connect(self.update_table)
        self.update_table(doc.infos)

    def update_table(self, infos):
        n = self.model.rowCount()
        self.model.set_infos(infos, self.doc.graph)
        if n != self.model.rowCount():
            self.table.resizeColumnsToContents()

    def _clicked(self, r):
        name = self.model.name(r)
        if name in self.doc.graph.nodes:
            self.node_clicked.emit(name)
