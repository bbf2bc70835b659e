"""Weights: hub cache, download with progress and cancel, local files, refusal of misfits."""

import hashlib
import http.server
import os
import socket
import threading
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from explorer.core.cancel import Cancelled, CancelToken
from explorer.core.model.loading import load_model
from explorer.core.model.weights import (
    RANDOM_WARNING, WeightsError, WeightsMismatchError, apply_state_dict, download_file, hub_checkpoint_path,
    read_state_dict,
)
from explorer.core.model.zoo import get_spec


@pytest.fixture(scope="module")
def googlenet_state():
    """A state dict that differs from the (seeded) fresh initialisation, so that a load is visible."""
    model = get_spec("googlenet").build()
    g = torch.Generator().manual_seed(7)
    return {k: v + 0.01 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v.clone()
            for k, v in model.state_dict().items()}


@pytest.fixture
def hub_dir(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / "hub"))
    yield tmp_path / "hub"
    torch.hub.set_dir(old)


def _same(model, state):
    own = model.state_dict()
    return all(torch.equal(own[k], v) for k, v in state.items())


def _serve(directory: Path):
    """A loopback HTTP server for `directory`; returns (base url, shutdown)."""

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(directory), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server.shutdown


def _closed_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_hub_cache_is_used_first(hub_dir, googlenet_state):
    path = hub_checkpoint_path(get_spec("googlenet").weights_url)
    assert path.parent == hub_dir / "checkpoints" and path.name.startswith("googlenet-")
    path.parent.mkdir(parents=True)
    torch.save(googlenet_state, path)
    loaded = load_model("googlenet", allow_download=False)
    assert loaded.weights.kind == "pretrained" and "hub cache" in loaded.weights.source
    assert _same(loaded.module, googlenet_state)
    assert len(loaded.categories) == 1000 and loaded.categories[0] == "tench"


def test_without_cache_or_network_the_model_is_random_and_says_why(hub_dir, monkeypatch):
    spec = get_spec("googlenet")
    url = f"http://127.0.0.1:{_closed_port()}/googlenet-1378be20.pth"
    monkeypatch.setattr(type(spec), "weights_url", property(lambda self: url))
    loaded = load_model("googlenet", timeout=5)
    assert loaded.weights.is_random and loaded.weights.reason.startswith("download failed")
    assert loaded.weights.describe().startswith(RANDOM_WARNING)
    assert loaded.module(torch.randn(1, 3, 64, 64)).shape == (1, 1000)  # usable all the same
    assert not list((hub_dir / "checkpoints").glob("*"))  # no partial file left behind
    off = load_model("googlenet", allow_download=False)
    assert off.weights.is_random and "downloading is off" in off.weights.reason


def test_download_reports_progress_checks_hash_and_fills_the_cache(tmp_path, hub_dir, googlenet_state, monkeypatch):
    served = tmp_path / "srv"
    served.mkdir()
    blob = served / "tmp.pth"
    torch.save(googlenet_state, blob)
    digest = hashlib.sha256(blob.read_bytes()).hexdigest()
    name = f"googlenet-{digest[:8]}.pth"
    blob.rename(served / name)
    base, stop = _serve(served)
    try:
        spec = get_spec("googlenet")
        monkeypatch.setattr(type(spec), "weights_url", property(lambda self: f"{base}/{name}"))
        seen = []
        loaded = load_model("googlenet", progress=lambda done, total: seen.append((done, total)))
        assert loaded.weights.kind == "pretrained" and "downloaded" in loaded.weights.source
        assert _same(loaded.module, googlenet_state)
        size = (served / name).stat().st_size
        assert seen[0] == (0, size) and seen[-1] == (size, size)
        assert [d for d, _ in seen] == sorted(d for d, _ in seen) and len(seen) > 3
        assert (hub_dir / "checkpoints" / name).is_file()
        # A file whose content does not match the hash in its name is refused and not kept.
        (served / "googlenet-00000000.pth").write_bytes((served / name).read_bytes())
        with pytest.raises(OSError, match="sha256"):
            download_file(f"{base}/googlenet-00000000.pth", tmp_path / "dl" / "googlenet-00000000.pth")
        assert not list((tmp_path / "dl").iterdir())
    finally:
        stop()


def test_download_can_be_cancelled(tmp_path, googlenet_state):
    served = tmp_path / "srv"
    served.mkdir()
    torch.save(googlenet_state, served / "w.pth")
    base, stop = _serve(served)
    token = CancelToken()

    def progress(done, total):
        if done > 100_000:
            token.cancel()

    try:
        with pytest.raises(Cancelled):
            download_file(f"{base}/w.pth", tmp_path / "out" / "w.pth", progress=progress, cancel=token)
        assert not list((tmp_path / "out").iterdir())
    finally:
        stop()


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_file_loads(tmp_path, googlenet_state, suffix):
    path = tmp_path / f"mine{suffix}"
    if suffix == ".safetensors":
        save_file({k: v.contiguous() for k, v in googlenet_state.items()}, str(path))
    else:
        torch.save({"state_dict": googlenet_state}, path)  # wrapped like a training checkpoint
    loaded = load_model("googlenet", weights=path)
    assert loaded.weights.kind == "file" and not loaded.weights.is_random
    assert _same(loaded.module, googlenet_state)


class Payload:
    def __reduce__(self):
        return (os.system, ("echo owned > /dev/null",))


def test_files_are_never_executed(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"x": Payload()}, path)
    with pytest.raises(WeightsError, match="cannot read weights") as refused:
        read_state_dict(path)
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(WeightsError) as junk:
        read_state_dict(tmp_path / "junk.pth")
    # One line naming the file and what is wrong with it; never torch's advice to load with
    # weights_only=False (the code execution refused here).
    assert "system" in str(refused.value), refused.value  # what the pickle wanted to run
    for e in (refused.value, junk.value):
        text = str(e)
        assert "\n" not in text and ("evil.pth" in text or "junk.pth" in text)
        assert "weights_only" not in text and "arbitrary code" not in text, text
    with pytest.raises(WeightsError, match="no such"):
        read_state_dict(tmp_path / "missing.pth")


def test_misfit_is_refused_whole_with_the_keys_named(googlenet_state):
    model = get_spec("googlenet").build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    bad = dict(googlenet_state)
    del bad["conv1.conv.weight"]
    bad["extra.weight"] = torch.zeros(3)
    bad["fc.weight"] = torch.zeros(10, 1024)
    with pytest.raises(WeightsMismatchError) as info:
        apply_state_dict(model, bad)
    msg = str(info.value)
    assert "missing: conv1.conv.weight" in msg and "unexpected: extra.weight" in msg
    assert "mis-shaped: fc.weight (10, 1024)" in msg and "nothing was loaded" in msg
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())
    # Inception v3 weights into GoogLeNet: many keys, only the first few are listed.
    v3 = get_spec("inception_v3").build(device="meta").state_dict()
    with pytest.raises(WeightsMismatchError, match=r"and \d+ more"):
        apply_state_dict(model, v3)
