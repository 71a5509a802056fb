"""My blocks: blocks the user saved to the palette, kept as JSON in the user's data folder (written atomically)
and inserted into any project as one undo step, folded, with the same name."""
import json
from pathlib import Path

from PySide6.QtCore import QStandardPaths

from engine.errors import ProjectError
from engine.graph import GraphError
from engine.project import atomic_write

from . import grouping as G

FORMAT, VERSION = "layerboard-blocks", 1
PREFIX = "my:"              # a palette entry's type text for a saved block: "my:TITLE"


def default_path():
    """my-blocks.json in the user's data folder."""
    return Path(QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppDataLocation)) / "my-blocks.json"


def load(path=None):
    """[{title, nodes, edges, inputs}] saved so far; [] when there is no file or it cannot be read."""
    p = Path(path or default_path())
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    if not isinstance(d, dict) or d.get("format") != FORMAT or not isinstance(d.get("blocks"), list):
        return []
    return [b for b in d["blocks"] if isinstance(b, dict) and isinstance(b.get("title"), str)
            and isinstance(b.get("nodes"), list) and isinstance(b.get("edges"), list)]


def find(title, path=None):
    return next((b for b in load(path) if b["title"] == title), None)


def block_data(doc, block):
    """The block's layers (positions relative to its top-left), inner edges, and which inputs its outside
    source fed ([[member, port], …] per input)."""
    members = G._need(doc, block)
    data = doc.copy_data(members)
    xs = [n["meta"].get("x", 0) for n in data["nodes"]]
    ys = [n["meta"].get("y", 0) for n in data["nodes"]]
    for n in data["nodes"]:
        m = n["meta"]
        m.pop("block", None)
        m["x"], m["y"] = m.get("x", 0) - min(xs), m.get("y", 0) - min(ys)
    inside, feeds = set(members), {}
    for e in doc.graph.edges:
        if e.dst in inside and e.src not in inside:
            feeds.setdefault(e.src, []).append([e.dst, e.port])
    data["inputs"] = list(feeds.values())
    return data


def save_block(doc, block, title, path=None):
    """Add (or replace) `title` in My blocks with the block's layers; returns the title. ProjectError when the
    file cannot be written (the previous one stays as it was)."""
    if not isinstance(title, str) or not title.strip():
        raise GraphError("a saved block needs a name")
    title = title.strip()
    data = dict(block_data(doc, block), title=title)
    p = Path(path or default_path())
    kept = [b for b in load(p) if b["title"] != title] + [data]
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, (json.dumps({"format": FORMAT, "version": VERSION, "blocks": kept}, indent=1,
                                    ensure_ascii=False) + "\n").encode())
    except OSError as e:
        raise ProjectError(f"cannot save the block to {p}: {e.strerror or e}") from None
    return title


def insert(doc, title, pos=(0, 0), after=None, path=None):
    """Insert saved block `title` at pos, fed by node `after` if given, folded, as one undo step; returns the
    new layers' names (the block is named after the title)."""
    b = find(title, path)
    if b is None:
        raise GraphError(f"no saved block named {title!r}")
    if after is not None and after not in doc.graph.nodes:
        raise GraphError(f"no node named '{after}' to connect the block to")
    base = "".join(ch if ch.isalnum() or ch in "_-" else "_" for ch in title).strip("_") or "block"
    name = base if base not in doc.graph.nodes and not doc.graph.members(base) else G.fresh_name(doc.graph, base)
    doc.undo_stack.beginMacro(f"Insert {title}")
    failed = None
    try:
        names = doc.paste({"nodes": b["nodes"], "edges": b["edges"]}, offset=(float(pos[0]), float(pos[1])))
        renamed = dict(zip([n.get("name") for n in b["nodes"]], names))
        if after is not None and b.get("inputs"):
            for dst, port in b["inputs"][0]:
                doc.connect(after, renamed[dst], port)
        if len(names) >= 2:
            G.group(doc, names, name)
    except Exception as e:                # noqa: BLE001 - rolled back below, then raised again
        failed = e
    finally:
        doc.undo_stack.endMacro()
    if failed is not None:
        if doc.undo_stack.count() and doc.undo_stack.text(doc.undo_stack.index() - 1) == f"Insert {title}":
            doc.undo_stack.undo()
        raise failed
    return names
