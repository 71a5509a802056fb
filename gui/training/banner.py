"""The spec §7 diagnosis banner: two lines floating over the top of the plots when the trainer reports a finding."""
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton, QVBoxLayout

MARGIN = 8


class Banner(QFrame):
    """Diagnosis and remedies, one line each (elided; the tooltip has all): an overlay on `host`, so showing
    it re-lays out no plot and it covers little of a short dock."""

    def __init__(self, host):
        super().__init__(host)
        self.host, self._full = host, ("", "")
        self.setStyleSheet("Banner { background: #fdecea; border: 1px solid #e0a39d; border-radius: 3px; }"
                           "QLabel { color: #3c1f1c; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 3, 4, 3)
        lines = QVBoxLayout()
        lines.setSpacing(0)
        self.label, self.remedies = QLabel(""), QLabel("")
        f = self.label.font()
        f.setBold(True)
        self.label.setFont(f)
        for lab in (self.label, self.remedies):
            lab.setTextFormat(Qt.TextFormat.PlainText)
            lines.addWidget(lab)
        row.addLayout(lines, 1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        host.installEventFilter(self)
        self.hide()

    def text(self):
        """The whole diagnosis and remedies, unelided."""
        return "\n".join(self._full)

    def show_finding(self, message, remedies, fold=None):
        where = f"Fold {fold + 1}: " if fold is not None else ""
        self._full = (where + message, "Remedies (spec §7): " + " · ".join(remedies))
        self.setToolTip(self.text())
        self._place()
        self.show()
        self.raise_()

    def _place(self):
        """Across the host's top edge, just below its tab bar when it has one; each line elided to fit."""
        bar = getattr(self.host, "tabBar", None)
        top = bar().height() + MARGIN if bar else MARGIN
        w = max(self.host.width() - 2 * MARGIN, 100)
        for lab, t in zip((self.label, self.remedies), self._full):
            lab.setText(lab.fontMetrics().elidedText(t, Qt.TextElideMode.ElideRight, w - 40))
        self.setGeometry(MARGIN, top, w, self.sizeHint().height())

    def eventFilter(self, obj, ev):
        if obj is self.host and ev.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False
