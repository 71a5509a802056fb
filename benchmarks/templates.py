"""Train every gallery template as shipped and print the score it reaches next to the score it claims.

    python benchmarks/templates.py [name-substring]

Examples outside the gallery may claim a score where lower is better and another example they beat on the same
split: "claims": {"metric": "val_rmse", "at_most": 1.45, "beats": "temperature-rnn.json"}; both are trained.
Exit status 1 if a template falls short of its claim (the gallery would then promise too much)."""
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.project import Project  # noqa: E402
from gui.gallery import examples, gallery, meets, reaches_text, score  # noqa: E402
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
    for f, d in examples():
        c = d.get("claims")
        if not isinstance(c, dict) or want not in f.name:
            continue
        m, runs = c["metric"], {}
        for name in (f.name, c.get("beats")) if c.get("beats") else (f.name,):
            t0 = time.perf_counter()
            runs[name], r = score(Project.load(path("examples", name)), m)
            print(f"{name:24s} {m:15s} {runs[name]:.4f}  {r['epochs']} epochs, {r['status']}, "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)
        ok = runs[f.name] <= c["at_most"] and all(runs[f.name] < v for k, v in runs.items() if k != f.name)
        short += not ok
        print(f"{f.name}: claims {m} ≤ {c['at_most']:g}" + (f" and better than {c['beats']}" if c.get("beats") else "")
              + f": {'ok' if ok else 'SHORT'}", flush=True)
    return 1 if short else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
