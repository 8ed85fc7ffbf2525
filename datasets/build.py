"""Build datasets from the command line.

    python -m universeg_datasets.build embedded                       # all no-download datasets, 128x128
    python -m universeg_datasets.build drive --manual_dir ~/raw       # a raw dataset you downloaded
    python -m universeg_datasets.build synthetic_tasks --config tasks1000_size128
"""

from __future__ import annotations

import argparse

from universeg_datasets import base, registry


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("datasets", nargs="+", help=f"names, or 'embedded'; known: {', '.join(sorted(registry.BUILDERS))}")
    parser.add_argument("--config", help="builder config (default: size<SIZE>)")
    parser.add_argument("--size", type=int, default=base.DEFAULT_SIZE, choices=base.SIZES)
    parser.add_argument("--data_dir", help="TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets)")
    parser.add_argument("--manual_dir", help="folder holding the raw downloads (default: <data_dir>/downloads/manual)")
    args = parser.parse_args(argv)
    names = [n for name in args.datasets for n in (registry.EMBEDDED if name == "embedded" else [name])]
    for name in names:
        builder = registry.build(
            name, config=args.config or base.config_name(args.size), data_dir=args.data_dir, manual_dir=args.manual_dir
        )
        print(f"{name}: {builder.data_path}")


if __name__ == "__main__":
    main()
