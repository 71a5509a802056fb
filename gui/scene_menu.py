"""The canvas's context menus: a node's fix and Delete, an edge's Disconnect, a block's menu (GraphScene's)."""
from PySide6.QtWidgets import QMenu

from .block_item import BlockFrame, BlockItem, BlockPort
from .items import EdgeItem, NodeItem, PortItem


class SceneMenus:
    """Context menus of GraphScene (mixed in: uses its doc, folds, attempt, select and delete_selected)."""

    def context_menu(self, it):
        """The menu for a node, port or edge item: the node's fix (one click), delete; or disconnect."""
        menu = QMenu()
        if isinstance(it, BlockPort):                  # a folded block's port: the block's menu, not its layer's
            it = it.parentItem()
        if isinstance(it, (BlockItem, BlockFrame)):
            from .grouping_menu import block_menu
            return block_menu(self, menu, it.name)
        if isinstance(it, EdgeItem):
            menu.addAction("Disconnect", lambda: self.attempt(self.doc.disconnect, it.edge))
            return menu
        node = it.node if isinstance(it, PortItem) else it
        if not node.isSelected():
            self.select([node.name])
        info = self.doc.infos.get(node.name)
        if info is not None and info.fix is not None:
            fix = info.fix
            menu.addAction(f"Fix: {fix.text}", lambda: self.attempt(self.doc.apply_fix, node.name, fix))
            menu.addSeparator()
        from .grouping_menu import node_menu
        node_menu(self, menu, node.name)
        menu.addAction("Delete", self.delete_selected)
        return menu

    def contextMenuEvent(self, e):
        it = next((i for i in self.items(e.scenePos()) if i.isVisible()
                   and isinstance(i, (NodeItem, EdgeItem, PortItem, BlockItem, BlockFrame))), None)
        if it is not None:
            self.context_menu(it).exec(e.screenPos())
