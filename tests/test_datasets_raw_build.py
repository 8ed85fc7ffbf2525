"""Building every raw dataset present in a manual dir (python -m universeg_datasets.build raw, prepare_data.sh)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from universeg_datasets import build
from universeg_datasets.raw import dummy
from universeg_jax.data import tasks

REPO = Path(__file__).resolve().parents[1]
PRESENT = ("btcv", "idrid", "scd")


@pytest.fixture()
def manual(tmp_path):
    for name in PRESENT:
        dummy.write_dummy(name, tmp_path / "manual")
    (tmp_path / "manual" / "unrelated").mkdir()
    return tmp_path / "manual"


def test_list_names_present_datasets_and_tables_the_absent_ones(manual, capsys):
    build.main(["raw", "--list", "--manual_dir", str(manual)])
    out, err = capsys.readouterr()
    assert out.split() == sorted(PRESENT)
    assert "| BTCV |" not in err and "| KiTS | kits19 | kits19/ | https://github.com/neheller/kits19 |" in err
    assert "| PPMI | - | - | no builder: " in err
    assert err.count("\n| ") == 1 + 62 - len(PRESENT)  # header + every other raw builder + the 2 without one


def test_build_raw_builds_every_present_dataset(manual, tmp_path, capsys):
    build.main(["raw", "--manual_dir", str(manual), "--data_dir", str(tmp_path / "data"), "--size", "64"])
    store = tasks.open_tasks(list(PRESENT), tmp_path / "data", build=False, size=64)
    assert {t.dataset for t in store.tasks} == set(PRESENT)
    assert "absent" not in capsys.readouterr().out


def prepare(*args):
    env = {k: v for k, v in os.environ.items() if k not in ("TFDS_DATA_DIR", "DATASETS", "MANUAL_DIR")}
    return subprocess.run(["bash", str(REPO / "launch" / "prepare_data.sh"), "--tfds-data-dir=gs://bucket/tfds",
                           f"--python={sys.executable}", "--dry-run", *args],
                          capture_output=True, text=True, env=env, check=False)  # fmt: skip


def test_prepare_data_dry_run_lists_one_build_per_present_dataset(manual, tmp_path):
    result = prepare("--datasets=raw/size64,drive", f"--manual-dir={manual}", f"--local-data-dir={tmp_path / 'tfds'}")
    assert result.returncode == 0, result.stderr
    commands = [line[2:] for line in result.stderr.splitlines() if line.startswith("+ ")]
    assert " ".join(commands[0].split()[1:]) == f"-m universeg_datasets.build raw --list --manual_dir {manual}"
    built = [c.split()[3:6] for c in commands[1:-1]]
    assert built == [[n, "--config", "size64"] for n in sorted(PRESENT)] + [["drive", "--manual_dir", str(manual)]]
    assert "| ACDC | acdc | ACDC/ |" in result.stderr
    assert not (tmp_path / "tfds").exists()


def test_prepare_data_raw_needs_a_manual_dir():
    result = prepare("--datasets=raw")
    assert result.returncode == 2 and "--datasets=raw needs --manual-dir" in result.stderr
