"""Write docs/schemas/ (one JSON Schema per file kind + README.md) from the typed models.

Run from the repository root: ``python scripts/gen_schemas.py``. Schemas of kinds no
longer registered are removed; tests/test_schemas.py fails when the folder is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a script from a checkout that is not installed
    sys.path.insert(0, str(ROOT))

from expokit.core.atomic import atomic_write_text  # noqa: E402
from expokit.schemas import generate_docs  # noqa: E402

TARGET = ROOT / "docs" / "schemas"

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
