"""Official state_dicts load safely, the own format round-trips, and the v1 cache downloads once."""

import http.server
import os
import pickle
import threading
import zipfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from universeg_jax import weights
from universeg_jax.model import UniverSeg

FIXTURE = Path("tests/data/universeg_v1_torch_seed0.pt")


def small_model(seed=0):
    return UniverSeg((4, (3, 5)), rngs=nnx.Rngs(seed))


def test_the_fixture_state_dict_reads_without_torch():
    state = weights.read_torch_state_dict(FIXTURE)
    assert len(state) == 7 * 6 + 2  # 7 blocks x (cross, target, support) x (weight, bias) + out_conv
    assert state["enc_blocks.0.cross.cross_conv.weight"].shape == (64, 3, 3, 3)
    assert state["out_conv.conv.weight"].shape == (1, 64, 1, 1)
    assert all(v.dtype == np.float32 for v in state.values())


def test_official_export_round_trips_the_fixture_exactly():
    state = weights.read_torch_state_dict(FIXTURE)
    exported = weights.official_state_dict(weights.load_official(FIXTURE))
    assert sorted(exported) == sorted(state)
    assert all(np.array_equal(exported[k], state[k]) for k in state)


def write_archive(path, payload: bytes, extra=None):
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", payload)
        for name, data in (extra or {}).items():
            archive.writestr(f"archive/{name}", data)


class RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_a_pickle_that_would_run_code_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    bad = tmp_path / "evil.pt"
    write_archive(bad, pickle.dumps(OrderedDict(x=RunsCode(marker)), protocol=2))
    with pytest.raises(ValueError, match=r"refusing to load .*only plain tensor state_dicts"):
        weights.read_torch_state_dict(bad)
    assert not marker.exists()


@pytest.mark.parametrize(
    "content, match",
    [
        (b"not a zip file at all", "not a PyTorch state_dict archive"),
        (None, "expected one data.pkl"),
        (pickle.dumps([1, 2, 3], protocol=2), "does not hold a state_dict"),
        (pickle.dumps(OrderedDict(a="text"), protocol=2), "does not hold a state_dict"),
        (b"\x80\x02garbage", "not a readable state_dict"),
    ],
)
def test_files_that_are_not_state_dicts_are_refused(tmp_path, content, match):
    path = tmp_path / "weights.pt"
    if content is None:
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("archive/other.txt", b"")
    elif content.startswith(b"not a zip"):
        path.write_bytes(content)
    else:
        write_archive(path, content)
    with pytest.raises(ValueError, match=match):
        weights.read_torch_state_dict(path)


def test_a_missing_file_is_named():
    with pytest.raises(FileNotFoundError, match="no/such.pt"):
        weights.load_official("no/such.pt")


def test_mismatched_state_dicts_list_every_bad_key():
    state = weights.read_torch_state_dict(FIXTURE)
    del state["dec_blocks.1.support.vmapped.conv.bias"]
    state["enc_blocks.9.extra.weight"] = np.zeros(3, np.float32)
    state["out_conv.conv.weight"] = np.zeros((1, 32, 1, 1), np.float32)
    with pytest.raises(ValueError) as info:
        weights.from_official_state_dict(state, encoder_blocks=[64, 64, 64, 64])
    message = str(info.value)
    assert "missing keys: dec_blocks.1.support.vmapped.conv.bias" in message
    assert "unexpected keys: enc_blocks.9.extra.weight" in message
    assert "out_conv.conv.weight: file (1, 32, 1, 1), expected (1, 64, 1, 1)" in message


def test_the_architecture_is_read_off_the_state_dict():
    model = small_model()
    rebuilt = weights.from_official_state_dict(weights.official_state_dict(model))
    assert rebuilt.encoder_blocks == ((4, 4), (3, 5))
    assert rebuilt.decoder_blocks == ((4, 4),)


def test_own_format_round_trips_parameters_and_predictions(tmp_path):
    model = small_model(1)
    path = weights.save(model, tmp_path / "sub" / "model.safetensors")
    loaded = weights.load(path)
    assert loaded.encoder_blocks == model.encoder_blocks and loaded.decoder_blocks == model.decoder_blocks
    x = np.random.default_rng(0).random((1, 8, 8, 1), dtype=np.float32)
    s = np.random.default_rng(1).random((1, 2, 8, 8, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, s, s > 0.5), loaded(x, s, s > 0.5))
    assert [p.name for p in path.parent.iterdir()] == ["model.safetensors"]


def test_own_format_refuses_corrupt_and_foreign_files(tmp_path):
    path = weights.save(small_model(), tmp_path / "model.safetensors")
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="truncated.safetensors is corrupt"):
        weights.load(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all}")
    with pytest.raises(ValueError, match="not a universeg-jax safetensors file"):
        weights.load(garbage)
    with pytest.raises(ValueError, match="not a universeg-jax weights file"):
        from safetensors.numpy import save_file

        save_file({"x": np.zeros(2, np.float32)}, str(tmp_path / "foreign.safetensors"))
        weights.load(tmp_path / "foreign.safetensors")
    with pytest.raises(IsADirectoryError):
        weights.save(small_model(), tmp_path)


class FixtureServer:
    """Serves the fixture as the release file on 127.0.0.1; ``truncate`` sends fewer bytes than announced."""

    def __init__(self, truncate=False):
        body = FIXTURE.read_bytes()
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                requests.append(self.path)
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[: len(body) // 2] if truncate else body)

            def log_message(self, *args):
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/universeg_v1_nf64_ss64_STA.pt"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("UNIVERSEG_JAX_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_pretrained_downloads_once_converts_and_then_works_offline(cache):
    with FixtureServer() as server:
        model = weights.pretrained("v1", url=server.url)
        assert len(server.requests) == 1
    reference = weights.load_official(FIXTURE)
    x = np.random.default_rng(0).random((1, 16, 16, 1), dtype=np.float32)
    s = np.random.default_rng(1).random((1, 2, 16, 16, 1), dtype=np.float32)
    np.testing.assert_array_equal(model(x, s, s > 0.5), reference(x, s, s > 0.5))
    assert sorted(p.name for p in cache.iterdir()) == ["universeg_v1_nf64_ss64_STA.pt", "v1.safetensors", "v1.sha256"]
    # The server is gone: the converted cache serves the next call.
    offline = weights.pretrained("v1", url="http://127.0.0.1:9/unreachable")
    np.testing.assert_array_equal(offline(x, s, s > 0.5), reference(x, s, s > 0.5))


def test_pretrained_offline_says_where_to_put_the_file_by_hand(cache):
    with pytest.raises(RuntimeError) as info:
        weights.pretrained("v1", url="http://127.0.0.1:9/unreachable", timeout=5)
    assert "by hand" in str(info.value) and str(cache / "universeg_v1_nf64_ss64_STA.pt") in str(info.value)
    assert not cache.exists() or not any(cache.iterdir())


def test_a_file_put_in_the_cache_by_hand_is_used(cache):
    cache.mkdir()
    (cache / "universeg_v1_nf64_ss64_STA.pt").write_bytes(FIXTURE.read_bytes())
    model = weights.pretrained("v1", url="http://127.0.0.1:9/unreachable", timeout=5)
    assert model.encoder_blocks == ((64, 64),) * 4


def test_an_interrupted_download_leaves_nothing_behind(cache):
    with FixtureServer(truncate=True) as server, pytest.raises(RuntimeError, match="could not download"):
        weights.pretrained("v1", url=server.url, timeout=5)
    assert not any(cache.iterdir())


def test_a_wrong_file_in_the_cache_is_reported(cache):
    cache.mkdir()
    weights.save(small_model(), cache / "tmp.safetensors")
    (cache / "universeg_v1_nf64_ss64_STA.pt").write_bytes((cache / "tmp.safetensors").read_bytes())
    with pytest.raises(ValueError, match="is not the official v1 weights file"):
        weights.pretrained("v1", url="http://127.0.0.1:9/unreachable")


def test_unknown_pretrained_names_are_listed():
    with pytest.raises(ValueError, match=r"unknown pretrained weights 'v9'; available: \['v1'\]"):
        weights.pretrained("v9")


def test_paths_are_not_left_half_written_when_saving_fails(tmp_path, monkeypatch):
    target = tmp_path / "model.safetensors"
    weights.save(small_model(0), target)
    before = target.read_bytes()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(weights, "save_file", fail)
    with pytest.raises(OSError, match="disk full"):
        weights.save(small_model(1), target)
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["model.safetensors"]


def test_saved_files_get_the_usual_permissions(tmp_path):
    path = weights.save(small_model(), tmp_path / "model.safetensors")
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask
