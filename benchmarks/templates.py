"""Train every gallery template as shipped and print the score it reaches next to the score it claims.

    python benchmarks/templates.py [name-substring]

Exit status 1 if a template falls short of its claim (the gallery would then promise too much)."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.project import Project  # noqa: E402
from gui.gallery import gallery, meets, reaches_text, score  # noqa: E402
from resources import path  # noqa: E402


def main(argv):
    want = argv[0] if argv else ""
    short = 0
    for e in gallery():
        if want not in e["file"]:
            continue
        t0 = time.perf_counter()
        v, r = score(Project.load(path("examples", e["file"])), e["metric"])
        ok = meets(e, v)
        short += not ok
        print(f"{e['file']:28s} {e['metric']:15s} {v:.4f}  (claims {reaches_text(e)}: {'ok' if ok else 'SHORT'})  "
              f"{r['epochs']} epochs, {r['status']}, {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
