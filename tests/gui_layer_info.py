"""What the window shows of a layer: its palette family and the tooltip of its node on the canvas."""


def family_and_tooltip(qtbot, graph, node):
    """(the palette group listing node's type, the node's tooltip text) with graph loaded in a MainWindow."""
    from engine.project import Project
    from gui.mainwindow import MainWindow
    from gui.palette import PaletteTree
    tree = PaletteTree()
    family = {tree.topLevelItem(i).child(j).text(0): tree.topLevelItem(i).text(0)
              for i in range(tree.topLevelItemCount()) for j in range(tree.topLevelItem(i).childCount())}
    w = MainWindow(training=False)
    qtbot.addWidget(w)
    w.doc.load(Project(graph))
    return family[graph.nodes[node].type], w.scene.nodes[node].tooltip_text()
