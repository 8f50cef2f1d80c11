"""Rebuild docs/benchmarks.md from docs/benchmarks/summary.md and one file per benchmark.

    python bench/gather_docs.py

Each benchmark's page keeps its own figures (edit it after a run); this gathers them
under the summary table, one heading level down, so the figures live in one place each.
"""

from __future__ import annotations

from pathlib import Path

DOCS = Path(__file__).resolve().parents[1] / "docs"
PARTS = ("core", "statements", "callbacks", "reconcile")


def demote(text: str) -> str:
    """Make the page's top heading level 2 and shift the rest with it (code untouched)."""
    lines, out, fence = text.splitlines(), [], False
    top = min(len(x) - len(x.lstrip("#")) for x in lines if x.startswith("#"))
    for line in lines:
        if line.startswith("```"):
            fence = not fence
        if not fence and line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            line = "#" * (level - top + 2) + line[level:]
        out.append(line)
    return "\n".join(out).strip() + "\n"


def main() -> None:
    summary = (DOCS / "benchmarks" / "summary.md").read_text(encoding="utf-8").rstrip()
    parts = [demote((DOCS / "benchmarks" / f"{p}.md").read_text(encoding="utf-8"))
             for p in PARTS]
    (DOCS / "benchmarks.md").write_text(summary + "\n\n" + "\n".join(parts),
                                        encoding="utf-8")


if __name__ == "__main__":
    main()
