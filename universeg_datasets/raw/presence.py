"""Which raw datasets a manual dir holds, and one table of the absent ones with where to get them.

python -m universeg_datasets.build raw --manual_dir DIR          # build every raw dataset present
python -m universeg_datasets.build raw --list --manual_dir DIR   # only list them (names on stdout)
"""

from __future__ import annotations

import os
from pathlib import Path

from universeg_datasets import catalog, registry


def default_manual_dir(data_dir=None) -> Path:
    """TFDS's default: ``<data_dir>/downloads/manual`` (data dir: $TFDS_DATA_DIR or ~/tensorflow_datasets)."""
    root = data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(root).expanduser() / "downloads" / "manual"


def survey(manual_dir) -> tuple[list[str], list[tuple[str, str, str, str]]]:
    """(raw builders whose files are in ``manual_dir``, rows (dataset, builder, folder, source) of the absent ones
    and of the catalog datasets that have no builder (folder "-", the reason instead of a source)).

    Present means a build would find images (``RawTaskBuilder.missing``), not only that the folder exists."""
    manual_dir = Path(manual_dir).expanduser()
    present, absent = [], []
    for entry in sorted(catalog.load_catalog(), key=lambda e: e["name"].lower()):
        if not entry["builders"]:
            absent.append((entry["name"], "-", "-", f"no builder: {entry['reason']}"))
        for name in entry["builders"]:
            builder = registry.builder_class(name)
            why = builder.missing(manual_dir)
            if why is None:
                present.append(name)
            elif (manual_dir / builder.RAW_FOLDER).is_dir():  # the folder is there, not the files a build needs
                absent.append((entry["name"], name, f"{builder.RAW_FOLDER}/", f"{builder.HOMEPAGE} ({why})"))
            else:
                absent.append((entry["name"], name, f"{builder.RAW_FOLDER}/", builder.HOMEPAGE))
    return present, absent


def absent_table(manual_dir, rows) -> str:
    """Markdown table of the absent datasets (what ``build raw`` prints)."""
    lines = [
        f"Raw datasets not found in {manual_dir} ({len(rows)}): download each into the folder named "
        "(its builder's MANUAL_DOWNLOAD_INSTRUCTIONS give the layout)",
        "| dataset | builder | folder in the manual dir | download from |",
        "|---|---|---|---|",
    ]
    lines += [f"| {dataset} | {name} | {folder} | {source} |" for dataset, name, folder, source in rows]
    return "\n".join(lines)
