"""The spec §7 diagnosis banner shown above the plots when the trainer reports a finding."""
from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QToolButton


class Banner(QFrame):
    """The spec §7 diagnosis with its remedies, shown when the trainer reports a finding."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setStyleSheet("Banner { background: #fdecea; border: 1px solid #e0a39d; border-radius: 3px; }")
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
        self.hide()

    def show_finding(self, message, remedies, fold=None):
        where = f"Fold {fold + 1}: " if fold is not None else ""
        self.label.setText(f"<b>{where}{message}</b><br>Remedies (spec §7): {' · '.join(remedies)}")
        self.show()
