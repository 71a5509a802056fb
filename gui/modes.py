"""Build / Train: two window layouts. Build gives the canvas most of the window (the training panel hidden, the
summary a strip at the bottom); Train shows the training panel with room for curves and views. The window opens
in Build (no run is active at launch) unless the user last chose Train from the menu; a run starting switches to
Train for that session only."""
from PySide6.QtCore import QSettings, Qt
from PySide6.QtGui import QAction, QActionGroup, QKeySequence

BUILD_SHARE = 0.24          # of the window's height, for the bottom panels while building
TRAIN_SHARE = 0.55          # … while training
KEY = "window/mode"         # the mode the user last chose from the menu (kept when the window remembers its layout)


class Modes:
    """View ▸ Build (Ctrl+1) / Train (Ctrl+2), also on the toolbar; `mode` is the one shown."""

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
            a.triggered.connect(lambda _=False, k=key: self.choose(k))
            self.group.addAction(a)
            win.view_menu.addAction(a)
            win.toolbar.addAction(a)
            self.actions[key] = a
        win.doc.locked_changed.connect(lambda on: on and self.set("train"))
        self.mode = "build"
        self.actions["build"].setChecked(True)

    def saved(self):
        """The mode to open in: the user's last menu choice where the window remembers its layout, else Build."""
        m = QSettings().value(KEY, "build") if self.win.remember else "build"
        return m if m in self.actions else "build"

    def start(self):
        """At launch, after the saved dock layout is restored: Build hides the training panel; Train keeps the
        panels as the user left them."""
        mode = self.saved()
        if mode == "train":
            self.mode = "train"
            self.actions["train"].setChecked(True)
        else:
            self.set("build")

    def choose(self, mode):
        """The user picked a mode (menu, toolbar, Ctrl+1/2): show it and open in it next time."""
        self.set(mode)
        if self.win.remember:
            QSettings().setValue(KEY, mode)

    def sync(self):
        """After View ▸ Reset layout (every panel shown): Train."""
        self.mode = "train"
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
