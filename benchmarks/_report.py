"""Shared by the benchmark scripts: a right-aligned text table."""


def table(title, header, rows):
    """Print ``rows`` under ``header``, each column as wide as its widest cell."""
    print(f"\n{title}")
    widths = [max(len(str(h)), *(len(str(r[k])) for r in rows)) for k, h in enumerate(header)]
    print("  ".join(str(h).rjust(w) for h, w in zip(header, widths)))
    for r in rows:
        print("  ".join(str(v).rjust(w) for v, w in zip(r, widths)), flush=True)
