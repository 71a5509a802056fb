"""Menus for blocks: the canvas context menu entries and the Edit menu's Group / Ungroup / Fold / Rename / Save to
palette, all calling gui.grouping (one undo step each)."""
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import QInputDialog, QLineEdit

from . import grouping as G


def ask_name(parent, title, label, text):
    """A name typed by the user, or None when cancelled."""
    name, ok = QInputDialog.getText(parent, title, label, QLineEdit.EchoMode.Normal, text)
    return name if ok else None


def rename_dialog(scene, block, parent=None):
    new = ask_name(parent, "Rename block", f"New name for block '{block}':", block)
    if new is not None:
        scene.attempt(G.rename_block, scene.doc, block, new)


def save_dialog(scene, block, parent=None):
    from .my_blocks import save_block
    title = ask_name(parent, "Save block to palette", "Name in the palette's “My blocks”:", block)
    if title is not None:
        if scene.attempt(save_block, scene.doc, block, title) is not None:
            scene.message.emit(f"saved block '{block}' to the palette as '{title.strip()}' (My blocks)")


def block_menu(scene, menu, block):
    """Context menu of a folded block (or an unfolded block's frame)."""
    doc = scene.doc
    menu.addAction("Unfold" if G.folded(doc, block) else "Fold", lambda: scene.attempt(G.toggle, doc, block))
    menu.addAction("Rename block…", lambda: rename_dialog(scene, block))
    menu.addAction("Ungroup", lambda: scene.attempt(G.ungroup, doc, block))
    menu.addAction("Save block to palette…", lambda: save_dialog(scene, block))
    menu.addSeparator()
    menu.addAction("Delete block and its layers",
                   lambda: scene.attempt(doc.remove_nodes, doc.graph.members(block)))
    return menu


def node_menu(scene, menu, name):
    """Block entries of a layer's context menu: group the selection, or fold / ungroup the block it is in."""
    doc = scene.doc
    sel = scene.selected_names()
    if len(sel) >= 2:
        menu.addAction("Group as block", lambda: group_selected(scene))
    b = G.block_of(doc, name)
    if b is not None:
        menu.addAction(f"Fold block '{b}'", lambda: scene.attempt(G.set_folded, doc, b, True))
        menu.addAction(f"Ungroup '{b}'", lambda: scene.attempt(G.ungroup, doc, b))
    if len(sel) >= 2 or b is not None:
        menu.addSeparator()


def group_selected(scene):
    """Group the selected layers as a new folded block; the block is selected afterwards."""
    name = scene.attempt(G.group, scene.doc, scene.selected_names())
    if name:
        scene.clearSelection()
        it = scene.folds.items.get(name)
        if it is not None:
            it.setSelected(True)
        scene.message.emit(f"grouped as '{name}': double-click it to open, right-click to rename or save it")
    return name


def selected_block(scene):
    """The block of the selection: a selected folded block, else the block all selected layers are in."""
    items = [it for it in scene.folds.items.values() if it.isSelected()]
    if len(items) == 1:
        return items[0].name
    blocks = {G.block_of(scene.doc, n) for n in scene.selected_names()}
    return blocks.pop() if len(blocks) == 1 and None not in blocks else None


def install(win, menu):
    """Edit ▸ Group as block (Ctrl+G), Ungroup (Ctrl+Shift+G), Fold / unfold (Ctrl+Shift+F), Rename block…,
    Save block to palette…"""
    sc = win.scene

    def on_block(fn):
        def run():
            b = selected_block(sc)
            if b is None:
                return win.show_message("select a block (or layers of one) first")
            fn(b)
        return run

    rows = (("&Group as block", lambda: group_selected(sc), "Ctrl+G", "Fold the selected layers into one block"),
            ("&Ungroup", on_block(lambda b: sc.attempt(G.ungroup, win.doc, b)), "Ctrl+Shift+G",
             "Show the selected block's layers one by one again"),
            ("Fold / unfold block", on_block(lambda b: sc.attempt(G.toggle, win.doc, b)), "Ctrl+Shift+F",
             "Show the selected block as one node, or open it in place"),
            ("Rena&me block…", on_block(lambda b: rename_dialog(sc, b, win)), None, "Give the selected block a name"),
            ("Save block to &palette…", on_block(lambda b: save_dialog(sc, b, win)), None,
             "Keep the selected block in the palette's My blocks, for any project"))
    menu.addSeparator()
    acts = []
    for text, slot, keys, tip in rows:
        a = QAction(text, win)
        if keys:
            a.setShortcut(QKeySequence(keys))
        a.setStatusTip(tip)
        a.triggered.connect(slot)
        menu.addAction(a)
        acts.append(a)
    return acts
