"""The spec §7 diagnosis banner, floating over the top of the plots when the trainer reports a finding."""
from PySide6.QtCore import QEvent, Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton

MARGIN = 8


class Banner(QFrame):
    """The spec §7 diagnosis with its remedies: an overlay on `host` (showing it re-lays out no plot)."""

    def __init__(self, host):
        super().__init__(host)
        self.host = host
        self.setStyleSheet("Banner { background: #fdecea; border: 1px solid #e0a39d; border-radius: 3px; }"
                           "QLabel { color: #3c1f1c; }")
        row = QHBoxLayout(self)
        row.setContentsMargins(6, 4, 4, 4)
        self.label = QLabel("")
        self.label.setWordWrap(True)
        self.label.setTextFormat(Qt.TextFormat.RichText)
        row.addWidget(self.label, 1)
        close = QToolButton()
        close.setText("✕")
        close.setAutoRaise(True)
        close.clicked.connect(self.hide)
        row.addWidget(close, 0, Qt.AlignmentFlag.AlignTop)
        host.installEventFilter(self)
        self.hide()

    def show_finding(self, message, remedies, fold=None):
        where = f"Fold {fold + 1}: " if fold is not None else ""
        self.label.setText(f"<b>{where}{message}</b><br>Remedies (spec §7): {' · '.join(remedies)}")
        self._place()
        self.show()
        self.raise_()

    def _place(self):
        """Across the host's top edge, just below its tab bar when it has one."""
        bar = getattr(self.host, "tabBar", None)
        top = bar().height() + MARGIN if bar else MARGIN
        w = max(self.host.width() - 2 * MARGIN, 100)
        self.setGeometry(MARGIN, top, w, self.heightForWidth(w) if self.hasHeightForWidth() else self.sizeHint().height())

    def eventFilter(self, obj, ev):
        if obj is self.host and ev.type() == QEvent.Type.Resize and self.isVisible():
            self._place()
        return False
