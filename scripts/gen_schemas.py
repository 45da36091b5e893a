"""Write docs/schemas/ (one JSON Schema per file kind + README.md) from the typed models.

Run from the repository root: ``python scripts/gen_schemas.py``. Schemas of kinds no
longer registered are removed; tests/test_schemas.py fails when the folder is stale.
"""

from __future__ import annotations

from pathlib import Path

from expokit.core.atomic import atomic_write_text
from expokit.core.schema import generate_docs

TARGET = Path(__file__).resolve().parents[1] / "docs" / "schemas"

if __name__ == "__main__":
    TARGET.mkdir(parents=True, exist_ok=True)
    docs = generate_docs()
    for stale in TARGET.glob("*.schema.json"):
        if stale.name not in docs:
            stale.unlink()
            print(f"removed {stale}")
    for name, text in docs.items():
        atomic_write_text(TARGET / name, text)
    print(f"wrote {len(docs)} files to {TARGET}")
