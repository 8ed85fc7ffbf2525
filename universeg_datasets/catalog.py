"""The catalog of MegaMedical source datasets (``catalog.json``) and its Markdown table.

python -m universeg_datasets.catalog            # prints the catalog table used in docs/datasets.md
python -m universeg_datasets.catalog --layouts  # prints the raw builders' layout table used there
"""

from __future__ import annotations

import json
from pathlib import Path

from universeg_datasets import registry

CATALOG_FILE = Path(__file__).with_name("catalog.json")
FIELDS = ("name", "domain", "modalities", "labels", "dims", "url", "access", "builders")
# Every entry also has either "layout_source" (the official page or repository the builders' file layout
# comes from) or "reason" (why its public distribution cannot become segmentation tasks); "real_files", where
# present, says for each builder which real release files it has been built from (the tests' samples).


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
        if entry["builders"] and not entry.get("layout_source"):
            raise ValueError(f"catalog {path}: {entry['name']!r} has builders but no 'layout_source'")
        if not entry["builders"] and not entry.get("reason"):
            raise ValueError(f"catalog {path}: {entry['name']!r} has neither builders nor a 'reason' why none exists")
    return entries


def markdown_table(entries: list[dict]) -> str:
    """One row per dataset; the last column names its builder(s) and the layout's source, or why none exists."""
    lines = [
        "| dataset | domain | modalities | labels | 2D/3D | access | builder (layout source) |",
        "|---|---|---|---|---|---|---|",
    ]
    for e in sorted(entries, key=lambda e: e["name"].lower()):
        if e["builders"]:
            status = ", ".join(f"`{b}`" for b in e["builders"]) + f" ([layout]({e['layout_source']}))"
        else:
            status = f"none: {e.get('reason') or 'not yet'}"
        lines.append(
            f"| [{e['name']}]({e['url']}) | {e['domain']} | {', '.join(e['modalities'])} | "
            f"{', '.join(e['labels'])} | {e['dims']} | {e['access']} | {status} |"
        )
    return "\n".join(lines)


def layouts_table() -> str:
    """One row per raw builder: what it gives, the files it reads inside the manual dir (the layout part of its
    MANUAL_DOWNLOAD_INSTRUCTIONS, with the download note), the page the layout comes from, and the real release
    files it has been built from (else the fakes of ``raw.dummy`` only)."""
    real = {name: text for entry in load_catalog() for name, text in entry.get("real_files", {}).items()}
    lines = [
        "| builder | what | layout inside the manual dir | layout source | built from real release files |",
        "|---|---|---|---|---|",
    ]
    for name in sorted(registry.RAW):
        builder = registry.builder_class(name)
        layout = builder.MANUAL_DOWNLOAD_INSTRUCTIONS.split("so that it reads:\n", 1)[-1]
        cells = "<br>".join(f"`{line.strip()}`" if line.startswith("  ") else line for line in layout.splitlines())
        what = " ".join((builder.__doc__ or "").split())
        checked = real.get(name, "no (fakes only)")
        lines.append(f"| `{name}` | {what} | {cells.replace('|', '&#124;')} | {builder.HOMEPAGE} | {checked} |")
    return "\n".join(lines)


if __name__ == "__main__":
    import sys

    print(layouts_table() if "--layouts" in sys.argv[1:] else markdown_table(load_catalog()))
