"""The catalog of MegaMedical source datasets (``catalog.json``) and its Markdown table.

    python -m universeg_datasets.catalog        # prints the table used in docs/datasets.md
"""

from __future__ import annotations

import json
from pathlib import Path

from universeg_datasets import registry

CATALOG_FILE = Path(__file__).with_name("catalog.json")
FIELDS = ("name", "domain", "modalities", "labels", "dims", "url", "access", "builders")


def load_catalog(path: Path = CATALOG_FILE) -> list[dict]:
    """The catalog entries, checked: every field present, names unique, builders known to the registry."""
    try:
        entries = json.loads(Path(path).read_text())["datasets"]
    except (OSError, ValueError, KeyError) as err:
        raise ValueError(f"cannot read catalog {path}: {err}") from err
    names = set()
    for entry in entries:
        missing = [f for f in FIELDS if f not in entry]
        if missing:
            raise ValueError(f"catalog {path}: entry {entry.get('name')!r} lacks {missing}")
        if entry["name"] in names:
            raise ValueError(f"catalog {path}: {entry['name']!r} appears twice")
        names.add(entry["name"])
        unknown = [b for b in entry["builders"] if b not in registry.BUILDERS]
        if unknown:
            raise ValueError(f"catalog {path}: {entry['name']!r} names unknown builders {unknown}")
    return entries


def markdown_table(entries: list[dict]) -> str:
    """One row per dataset; the status column names its builder(s) or says none exists yet."""
    lines = [
        "| dataset | domain | modalities | labels | 2D/3D | access | builder |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in sorted(entries, key=lambda e: e["name"].lower()):
        status = ", ".join(f"`{b}`" for b in e["builders"]) if e["builders"] else "not yet"
        lines.append(
            f"| [{e['name']}]({e['url']}) | {e['domain']} | {', '.join(e['modalities'])} | "
            f"{', '.join(e['labels'])} | {e['dims']} | {e['access']} | {status} |"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table(load_catalog()))
