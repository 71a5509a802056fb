"""Build / Train: two window layouts. Build gives the canvas most of the window (the training panel hidden, the
summary a strip at the bottom); Train shows the training panel with room for curves and views. A run starting
switches to Train."""
from PySide6.QtCore import Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

BUILD_SHARE = 0.24          # of the window's height, for the bottom panels while building
TRAIN_SHARE = 0.55          # … while training


class Modes:
    """View ▸ Build (Ctrl+1) / Train (Ctrl+2), also on the toolbar; `mode` is the one chosen."""

    def __init__(self, win):
        self.win, self.mode = win, None
        self.group = QActionGroup(win)
        self.actions = {}
        win.toolbar.addSeparator()
        win.view_menu.addSeparator()
        for key, text, keys, tip in (("build", "&Build", "Ctrl+1", "Give the canvas most of the window"),
                                     ("train", "&Train", "Ctrl+2", "Give the training panels room for curves")):
            a = QAction(text, win, checkable=True)
            a.setShortcut(QKeySequence(keys))
            a.setStatusTip(tip)
            a.triggered.connect(lambda _=False, k=key: self.set(k))
            self.group.addAction(a)
            win.view_menu.addAction(a)
            win.toolbar.addAction(a)
            self.actions[key] = a
        win.doc.locked_changed.connect(lambda on: on and self.set("train"))
        self.mode = "train"                           # the window opens as the user left it (panels shown)
        self.actions["train"].setChecked(True)

    def bottom(self):
        """The docked panels at the bottom of the window that are shown."""
        w = self.win
        return [d for d in (w.summary, w.training) if d is not None and not d.isFloating() and not d.isHidden()
                and w.dockWidgetArea(d) == Qt.DockWidgetArea.BottomDockWidgetArea]

    def set(self, mode):
        self.mode = mode
        self.actions[mode].setChecked(True)
        t = self.win.training
        if t is not None and not t.isFloating():
            t.setVisible(mode == "train" or t.running)
        docks = self.bottom()
        if docks:
            share = BUILD_SHARE if mode == "build" else TRAIN_SHARE
            self.win.resizeDocks(docks[:1], [max(120, int(self.win.height() * share))], Qt.Orientation.Vertical)
