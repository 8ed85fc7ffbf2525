"""Build datasets from the command line.

python -m universeg_datasets.build embedded                       # all no-download datasets, 128x128
python -m universeg_datasets.build drive --manual_dir ~/raw       # a raw dataset you downloaded
python -m universeg_datasets.build synthetic_tasks --config tasks1000_size128
python -m universeg_datasets.build raw --manual_dir ~/raw          # every raw dataset present in ~/raw
python -m universeg_datasets.build raw --list --manual_dir ~/raw   # only list them, and the absent ones
"""

from __future__ import annotations

import argparse
import sys

from universeg_datasets import base, registry
from universeg_datasets.raw import presence


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "datasets",
        nargs="+",
        help=f"names, 'embedded', or 'raw' (every raw dataset in the manual dir); known: {', '.join(sorted(registry.BUILDERS))}",
    )
    parser.add_argument("--config", help="builder config (default: size<SIZE>)")
    parser.add_argument("--size", type=int, default=base.DEFAULT_SIZE, choices=base.SIZES)
    parser.add_argument("--data_dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--manual_dir", help="folder holding the raw downloads (default: <data_dir>/downloads/manual)")
    parser.add_argument("--list", action="store_true", help="with 'raw': print the present raw datasets, build nothing")
    args = parser.parse_args(argv)
    names = []
    for name in args.datasets:
        names += registry.EMBEDDED if name == "embedded" else raw_present(args) if name == "raw" else [name]
    if args.list:
        print("\n".join(names))
        return
    for name in names:
        builder = registry.build(
            name, config=args.config or base.config_name(args.size), data_dir=args.data_dir, manual_dir=args.manual_dir
        )
        print(f"{name}: {builder.data_path}")


def raw_present(args) -> list[str]:
    """The raw datasets in the manual dir; the absent ones go to stderr as one table."""
    manual_dir = args.manual_dir or presence.default_manual_dir(args.data_dir)
    present, absent = presence.survey(manual_dir)
    print(presence.absent_table(manual_dir, absent), file=sys.stderr)
    return present


if __name__ == "__main__":
    main()
