"""What a first-time user meets: interrupted runs leave nothing behind, user errors are one line (bugs keep their
traceback), option values are checked before the model loads, no warnings a user cannot act on."""

import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tifffile
from flax import nnx
from PIL import Image

from tests.conftest import REPO, segment_options
from universeg_jax import cli, overlay
from universeg_jax.model import UniverSeg


@pytest.fixture(scope="module")
def many_queries(tmp_path_factory):
    """Two labelled support images and 400 small queries: a run long enough to be interrupted mid-way."""
    root = tmp_path_factory.mktemp("many")
    rng = np.random.default_rng(0)
    for d in ("img", "lab", "query"):
        (root / d).mkdir()
    for k in range(2):
        image = rng.integers(0, 255, (48, 48), dtype=np.uint8)
        tifffile.imwrite(root / "img" / f"s{k}.tif", image)
        Image.fromarray(((image > 128) * 255).astype(np.uint8)).save(root / "lab" / f"s{k}.png")
    for k in range(400):
        tifffile.imwrite(root / "query" / f"q{k:03d}.tif", rng.integers(0, 255, (48, 48), dtype=np.uint8))
    return root


def segment_command(root, out, weights_file):
    options = segment_options(root / "img", root / "lab", root / "query", out, weights_file, "--batch-size", "1")
    return [sys.executable, "-m", "universeg_jax.cli", "segment", *options]


def start_and_wait_for_staging(command, out, timeout=300):
    """Start the command; return it once its staging folder in ``out`` holds written outputs.

    The command gets Ctrl+C's default disposition, as in a terminal: a suite run in the background (``pytest &``
    in a script) has SIGINT ignored, and Python then never turns it into KeyboardInterrupt."""
    process = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        staged = [p for p in out.glob(".universeg-jax-*/**/*") if p.is_file()] if out.exists() else []
        if len(staged) >= 3:
            return process
        if process.poll() is not None:
            raise AssertionError(f"the run ended before it was interrupted: {process.communicate()}")
        time.sleep(0.02)
    process.kill()
    raise AssertionError("no staged outputs appeared")


@pytest.mark.parametrize("signum, code, existing", [(signal.SIGTERM, 143, True), (signal.SIGINT, 130, False)])
def test_interrupted_segment_leaves_out_as_it_was(many_queries, weights_file, tmp_path, signum, code, existing):
    out = tmp_path / "out"
    if existing:
        out.mkdir()
        (out / "keep.txt").write_text("earlier work")
    process = start_and_wait_for_staging(segment_command(many_queries, out, weights_file), out)
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    assert process.returncode == code
    if existing:  # no staging folder, no outputs
        assert [p.name for p in out.rglob("*")] == ["keep.txt"] and (out / "keep.txt").read_text() == "earlier work"
    else:  # the folder the run created is gone again
        assert not out.exists()
    lines = err.strip().splitlines()
    assert lines == [f"universeg-jax: interrupted by {signal.Signals(signum).name}; {out} is as it was"], err


def test_staging_of_a_killed_run_is_removed_by_the_next_run(many_queries, weights_file, tmp_path):
    out = tmp_path / "out"
    command = segment_command(many_queries, out, weights_file)
    process = start_and_wait_for_staging(command, out)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    stale = list(out.glob(".universeg-jax-*"))
    assert len(stale) == 1 and any(stale[0].rglob("*.tif"))
    live = out / f".universeg-jax-{cli._owner()}-live"  # this process's: alive, so another run leaves it
    live.mkdir()
    few = tmp_path / "few"
    few.mkdir()
    for name in ("q000.tif", "q001.tif"):
        (few / name).write_bytes((many_queries / "query" / name).read_bytes())
    command[command.index("--query") + 1] = str(few)
    assert subprocess.run(command, capture_output=True, cwd=REPO).returncode == 0
    assert sorted(p.name for p in out.iterdir()) == sorted([live.name, "overlays", "q000.tif", "q001.tif"])


def run_main(*flags, code=None):
    """``python -m universeg_jax.main FLAGS`` (or ``code`` run before absl's app.run(main), to inject a bug)."""
    run = "from absl import app; from universeg_jax import main; app.run(main.main)"
    command = [sys.executable, "-c", f"{code}; {run}" if code else run, *flags]
    return subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)


def test_evaluation_without_a_shipped_model_says_which_flag_to_pass(tmp_path):
    from universeg_jax.trained import DEFAULT_WEIGHTS

    if DEFAULT_WEIGHTS.is_file():
        pytest.skip("a default model ships: the command runs")
    done = run_main(
        "--mode=evaluate", "--config=configs/evaluate.py", f"--workdir={tmp_path}", "--config.weights=default"
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "error" in x]
    assert line.startswith("universeg_jax.main: error: config.weights=default") and "--config.weights=v1" in line
    assert "--weights " not in line  # main has no such flag


def test_evaluation_of_v1_offline_is_one_line(tmp_path, monkeypatch):
    """docs/evaluation.md's default-model command evaluates v1 while no model ships: offline, a message."""
    monkeypatch.setenv("UNIVERSEG_JAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("UNIVERSEG_JAX_V1_URL", "http://127.0.0.1:9/v1.pt")  # nothing listens on port 9
    done = run_main("--mode=evaluate", "--config=configs/evaluate.py", f"--workdir={tmp_path}", "--config.weights=v1")
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    (line,) = [x for x in done.stderr.splitlines() if "error" in x]
    assert "could not download the v1 weights" in line and "by hand" in line


def test_main_dry_run_checks_the_config_and_a_bug_keeps_its_traceback(tmp_path):
    done = run_main("--mode=evaluate", "--config=configs/evaluate.py:check", f"--workdir={tmp_path}", "--dry_run")
    assert done.returncode == 0 and "flags and config are valid; would evaluate" in done.stdout, done.stderr
    done = run_main("--config=configs/base.py:cpu", f"--workdir={tmp_path}", "--config.train.steps=0", "--dry_run")
    assert done.returncode == 2 and "Traceback" not in done.stderr and "train.steps" in done.stderr
    assert not any(tmp_path.iterdir())
    bug = "import universeg_jax.evaluate as e; e.run = lambda *a: {}['a bug']"
    done = run_main("--mode=evaluate", "--config=configs/evaluate.py", f"--workdir={tmp_path}", code=bug)
    assert done.returncode == 1 and "Traceback" in done.stderr and "KeyError: 'a bug'" in done.stderr


def test_training_summary_points_the_full_protocol_at_the_run_s_evaluation_folder():
    from etils import epath

    from configs.evaluate import get_config
    from universeg_jax import train

    text = train.summary(epath.Path("/runs/a"), 10, "held", 4, 0.5, {"intensity": 0.6})
    (command,) = [line for line in text.splitlines() if "--mode=evaluate" in line]
    workdir = command.split("--workdir=")[1].split()[0]
    assert Path(workdir) / get_config().output == Path("/runs/a/evaluation")


def test_task_listing_without_size_reads_the_sizes_that_are_built(tmp_path, capsys):
    from universeg_datasets import registry
    from universeg_datasets.raw import dummy

    from universeg_jax.data import tasks

    dummy.write_dummy("wbc", tmp_path / "manual")
    registry.build("wbc", config="size64", data_dir=tmp_path, manual_dir=tmp_path / "manual")
    capsys.readouterr()
    tasks.main(["wbc", "--data_dir", str(tmp_path)])
    out = capsys.readouterr().out
    assert out.startswith("size 64\n") and "wbc/jtsc/nucleus/0" in out
    with pytest.raises(SystemExit) as exit_:
        tasks.main(["wbc", "drive", "--data_dir", str(tmp_path)])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith("python -m universeg_jax.data.tasks: error: dataset wbc/size128 is")


@pytest.mark.parametrize(
    "option, values, message",
    [
        ("--batch-size", ["0"], "--batch-size must be a positive integer, got 0"),
        ("--ensemble", ["-1"], "--ensemble must be a positive integer"),
        ("--support-size", ["0"], "--support-size must be a positive integer"),
        ("--slices-per-volume", ["0"], "--slices-per-volume must be a positive integer"),
        ("--memory-budget", ["nan"], "--memory-budget must be a positive number of GB"),
        ("--threshold", ["1.5"], "--threshold must be a probability in [0, 1], got 1.5"),
        ("--percentiles", ["99", "1"], "--percentiles must be LO < HI in [0, 100], got 99.0 1.0"),
        ("--window", ["400", "-1000"], "--window must be LO < HI"),
        ("--labels", ["0"], "--labels must be label values >= 1"),
        ("--size", ["0", "64"], "--size must be two positive integers"),
    ],
)
def test_bad_option_values_are_reported_before_anything_loads(tmp_path, monkeypatch, capsys, option, values, message):
    from universeg_jax import inference, trained

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(trained, "load", no_loading)
    monkeypatch.setattr(inference.Segmenter, "from_weights", no_loading)
    monkeypatch.setattr(cli.io, "list_images", no_loading)
    args = [
        "--support-images",
        "a",
        "--support-labels",
        "b",
        "--query",
        "c",
        "--out",
        str(tmp_path / "out"),
        option,
        *values,
    ]
    assert cli.main(["segment", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"universeg-jax: error: {message}") and err.count("\n") == 1, err
    if option in ("--size", "--slices-per-volume"):  # the app's options too
        from universeg_jax import app

        monkeypatch.setattr(app, "main", no_loading)
        assert cli.main(["app", option, *values]) == 2
        assert capsys.readouterr().err.startswith(f"universeg-jax: error: {message}")


def test_reading_a_training_run_prints_no_orbax_notices(tmp_path):
    from universeg_jax import checkpoint

    run = tmp_path / "run"
    run.mkdir()
    model = UniverSeg((4, 4), rngs=nnx.Rngs(0))
    checkpoint.write_config(
        run, {"model": {"encoder_blocks": [4, 4], "decoder_blocks": []}, "data": {"size": 32, "support_size": 4}}
    )
    with checkpoint.make_manager(run, save_every=1, keep_last=1) as manager:
        checkpoint.save(manager, 1, {"params": nnx.state(model)}, force=True)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "universeg_jax.cli",
            "export",
            "--weights",
            str(run),
            "--out",
            str(tmp_path / "m.safetensors"),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr


# ---------------------------------------------------------------------------------------------------------------
# The app and the pictures


@pytest.fixture(scope="module")
def app_parts(tmp_path_factory):
    from tests.test_app import make_nuclei, make_weights
    from universeg_jax.inference import Segmenter

    root = tmp_path_factory.mktemp("app")
    return Segmenter.from_weights(make_weights(root)), make_nuclei(root / "nuclei")


def app_client(app_parts, tmp_path, **session_options):
    from starlette.testclient import TestClient

    from universeg_jax.app import server
    from universeg_jax.app.state import Session

    segmenter, _ = app_parts
    return TestClient(server.create_app(Session(segmenter, tmp_path / "work", **session_options)))


def test_app_messages_never_show_the_work_folder(app_parts, tmp_path):
    from tests.test_app import add_support

    _, nuclei = app_parts
    stack = tmp_path / "t5.tif"
    tifffile.imwrite(stack, np.zeros((5, 10, 10), np.uint8))
    jpeg_label = tmp_path / "tile0_mask.jpg"
    Image.open(nuclei["labels"][0]).convert("L").save(jpeg_label)
    with app_client(app_parts, tmp_path) as client:
        unpaired = add_support(client, nuclei["images"], [nuclei["labels"][0], stack]).json()["error"]
        notes = add_support(client, nuclei["images"][:1], [jpeg_label]).json()["notes"]
    assert "t5.tif" in unpaired and "tile1.tif" in unpaired
    assert "JPEG labels are lossy" in notes[0] and notes[0].startswith("tile0_mask.jpg")
    for text in [unpaired, *notes]:
        assert "uploads" not in text and str(tmp_path) not in text and "…" not in text, text


def test_downloaded_support_readme_names_the_weights_in_use(app_parts, tmp_path):
    import io as _io
    import zipfile

    from tests.test_app import add_support

    _, nuclei = app_parts
    with app_client(app_parts, tmp_path, weights="/models/my run") as client:
        add_support(client, nuclei["images"], nuclei["labels"])
        archive = zipfile.ZipFile(_io.BytesIO(client.get("/api/support.zip").content))
    readme = archive.read("support/README.txt").decode()
    assert "--weights '/models/my run' --size 32 32" in readme and "WEIGHTS" not in readme


def test_a_binary_mask_is_called_foreground_and_label_maps_by_value(app_parts, tmp_path):
    from tests.test_app import add_queries, add_support

    _, nuclei = app_parts
    with app_client(app_parts, tmp_path) as client:
        state = add_support(client, nuclei["images"], nuclei["labels"]).json()  # 0/255 masks
        (query,) = [q["id"] for q in add_queries(client, nuclei["queries"][:1]).json()["queries"]]
        view = client.get(f"/api/queries/{query}/view").json()
    assert [(e["value"], e["name"]) for e in state["legend"]] == [(255, "foreground")]
    assert [(e["value"], e["name"]) for e in view["labels"]] == [(255, "foreground")]
    assert overlay.label_name(3, (3, 7)) == "label 3"
    script = (REPO / "universeg_jax" / "app" / "static" / "app.js").read_text()
    assert "`label ${" not in script  # the page shows the names the server gives


def test_the_empty_page_shows_no_broken_probability_image():
    page = (REPO / "universeg_jax" / "app" / "static" / "index.html").read_text()
    assert '<img id="probability" alt="probability map" hidden>' in page
    script = (REPO / "universeg_jax" / "app" / "static" / "app.js").read_text()
    assert "img.hidden = !url;" in script and script.count('$("probability").src') == 0


def test_overlay_titles_stop_before_the_next_panel():
    strip = overlay._text_strip(240, [(0, "atlas axial slice 77 and more words"), (120, "prediction")])
    background = np.all(strip == overlay.BACKGROUND, axis=-1)
    assert not background[:, :110].all() and not background[:, 123:].all()  # both titles are drawn
    assert background[:, 120 - overlay.GAP : 123].all()  # the first one ends before the second begins


def test_segment_help_says_a_plain_run_folder_works():
    segment = cli.build_parser()._subparsers._group_actions[0].choices["segment"]
    text = " ".join(segment.format_help().split())
    assert "training run folder (python -m universeg_jax.main --workdir=DIR: its latest checkpoint)" in text
