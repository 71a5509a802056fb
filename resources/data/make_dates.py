"""Write dates.csv: human-written dates in 12 languages (source) → ISO 8601 (target), from CLDR through babel.

Run from the repository root: `python resources/data/make_dates.py` (needs `pip install babel`; the app
itself never imports babel). Seeded: the same babel/CLDR version writes the same file.
"""
import csv
import datetime
import random
from pathlib import Path

from babel.dates import format_date

LOCALES = ["en_US", "en_GB", "fr_FR", "de_DE", "es_ES", "it_IT", "pt_BR", "nl_NL", "sv_SE", "pl_PL", "tr_TR",
           "id_ID"]
FORMATS = ["full", "long", "medium", "d MMM y"]     # CLDR's own patterns per locale, plus one fixed skeleton
N, SEED = 16000, 24
FIRST, LAST = datetime.date(1900, 1, 1), datetime.date(2099, 12, 31)
SPACES = {"\u00a0": " ", "\u202f": " ", "\u2009": " "}    # CLDR's no-break and thin spaces typed as plain spaces


def main(out=Path(__file__).with_name("dates.csv")):
    rng = random.Random(SEED)
    span = (LAST - FIRST).days
    seen, rows = set(), []
    while len(rows) < N:
        d = FIRST + datetime.timedelta(days=rng.randrange(span + 1))
        loc, fmt = rng.choice(LOCALES), rng.choice(FORMATS)
        text = format_date(d, fmt, locale=loc)
        for a, b in SPACES.items():
            text = text.replace(a, b)
        if rng.random() < 0.15:                       # people also write dates in lower case
            text = text.lower()
        if text in seen:
            continue
        seen.add(text)
        rows.append((text, d.isoformat(), loc, fmt))
    with open(out, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["source", "target", "locale", "format"])
        w.writerows(rows)
    print(f"wrote {len(rows)} pairs to {out}")


if __name__ == "__main__":
    main()
