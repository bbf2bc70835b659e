"""Published weights on the Hugging Face Hub (timm's v4 / Inception-ResNet-v2), seeded random weights, network
errors as sentences and a retry that never re-initialises. Never the network: caches are built in tmp_path
in the hub's layout."""

import dataclasses
import hashlib
import os
import socket
import subprocess
import sys
import textwrap
import urllib.error
from pathlib import Path


import huggingface_hub
import huggingface_hub.constants
import huggingface_hub.errors
import pytest
import torch
import torch.nn as nn
from safetensors.torch import save_file

from explorer.core.model import weights as weights_module
from explorer.core.cancel import CancelToken
from explorer.core.model.loading import load_model, resolve_published, retry_download
from explorer.core.model.weights import network_reason
from explorer.core.model.zoo import OPEN_WEIGHTS_HINT, HubWeights, ModelSpec, get_spec

REPO = "timm/tiny_test.tf_in1k"


def _tiny():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 1000))


#: A zoo-like spec whose published weights are on the hub (what inception_v4's spec is, at a tiny size).
TINY = ModelSpec(name="tiny_hub", title="tiny", family="test", builder=("", ""), builder_kwargs={}, weights=None,
                 native_size=(32, 32), factory=lambda: _tiny(), hub_weights=HubWeights(REPO))


def _published(model) -> dict[str, torch.Tensor]:
    """A state dict of `model` that differs from its seeded initialisation, so that a load is visible."""
    g = torch.Generator().manual_seed(11)
    return {k: v + 0.1 * torch.randn(v.shape, generator=g) if v.is_floating_point() else v + 3
            for k, v in model.state_dict().items()}


def _fill_cache(cache: Path, repo: str, state: dict, filename="model.safetensors", commit="0123abcd" * 5):
    """The hub's cache layout: models--org--name/{refs/main, snapshots/<commit>/<file>}."""
    root = cache / ("models--" + repo.replace("/", "--"))
    (root / "snapshots" / commit).mkdir(parents=True)
    (root / "refs").mkdir()
    (root / "refs" / "main").write_text(commit)
    path = root / "snapshots" / commit / filename
    if filename.endswith(".safetensors"):
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    else:
        torch.save(state, path)
    return path


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An empty hub cache, offline: huggingface_hub reads its settings when imported, so its constants
    are pointed here as well as the environment."""
    cache = tmp_path / "hf" / "hub"
    cache.mkdir(parents=True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(weights_module, "resolve_host", lambda host: None)  # tests that go "online" fake the hub
    return cache


def _equal(model, state):
    own = model.state_dict()
    return own.keys() == state.keys() and all(torch.equal(own[k], v) for k, v in state.items())


@pytest.mark.parametrize("filename", ["model.safetensors", "pytorch_model.bin"])
def test_weights_load_from_the_hub_cache(hub_cache, filename):
    state = _published(TINY.build())
    _fill_cache(hub_cache, REPO, state, filename)
    loaded = load_model(TINY)
    assert loaded.weights.kind == "pretrained" and "Hugging Face Hub cache" in loaded.weights.source
    assert _equal(loaded.module, state)


def test_a_misfit_cached_file_loads_nothing(hub_cache):
    state = _published(TINY.build())
    state.pop("5.bias")
    _fill_cache(hub_cache, REPO, state)
    loaded = load_model(TINY)
    assert loaded.weights.is_random and "1 missing: 5.bias" in loaded.weights.reason
    assert _equal(loaded.module, TINY.build().state_dict())  # untouched: the seeded random weights


def test_inception_v4_from_a_hub_cache_in_another_process(tmp_path):
    """The zoo's inception_v4 finds timm's repository in the cache named by HF_HUB_CACHE, offline, and
    loads it strictly into our definition."""
    cache = tmp_path / "hub"
    state = _published(get_spec("inception_v4").build())
    _fill_cache(cache, "timm/inception_v4.tf_in1k", state)
    digest = hashlib.sha256(b"".join(v.numpy().tobytes() for v in state.values())).hexdigest()
    code = textwrap.dedent("""
        import hashlib
        from explorer.core.model.loading import load_model
        m = load_model("inception_v4")
        print(m.weights.kind, m.weights.source)
        print(hashlib.sha256(b"".join(v.numpy().tobytes() for v in m.module.state_dict().values())).hexdigest())
    """)
    # One thread: on a busy machine torch's thread pool makes checking 43 M parameters ten times slower.
    env = dict(os.environ, HF_HUB_CACHE=str(cache), HF_HOME=str(tmp_path), HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    kind_line, got = out.stdout.strip().splitlines()
    assert kind_line.startswith("pretrained") and str(cache) in kind_line
    assert got == digest


def test_offline_without_cache_is_random_with_the_reason(hub_cache):
    loaded = load_model(TINY)
    assert loaded.weights.is_random and loaded.weights.offline
    assert "offline mode" in loaded.weights.reason and "HF_HUB_OFFLINE" in loaded.weights.reason


def test_no_published_weights_say_so_and_point_to_the_file_dialog():
    reasons = {name: resolve_published(None, get_spec(name)).reason  # no weights: the module is not touched
               for name in ("googlenet_paper", "bn_inception", "inception_resnet_v1")}
    for name, reason in reasons.items():
        assert OPEN_WEIGHTS_HINT in reason and "publish" in reason, name
    assert "BN-Inception" in reasons["bn_inception"] and "Inception-ResNet-v1" in reasons["inception_resnet_v1"]
    assert "GoogLeNet as in the paper" in reasons["googlenet_paper"]


def _digest(model) -> str:
    return hashlib.sha256(b"".join(v.numpy().tobytes() for v in model.state_dict().values())).hexdigest()


def test_random_weights_are_the_same_in_every_process():
    code = ("import hashlib; from explorer.core.model.zoo import get_spec; m = get_spec('bn_inception').build();"
            "print(hashlib.sha256(b''.join(v.numpy().tobytes() for v in m.state_dict().values())).hexdigest())")
    torch.manual_seed(123)  # whatever the caller's random state, the model's is its own
    before = torch.random.get_rng_state()
    here = _digest(get_spec("bn_inception").build())
    assert torch.equal(torch.random.get_rng_state(), before)  # and the caller's stream is left alone
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == here
    # Another model of the same architecture (a name of its own) is seeded differently.
    other = dataclasses.replace(get_spec("bn_inception"), name="bn_inception_copy")
    assert _digest(other.build()) != here


def test_random_weights_are_the_same_when_built_on_two_threads_at_once():
    """The window loads weights while another worker builds a model: the draws must not interleave."""
    import threading

    names = ["googlenet_paper", "bn_inception"]
    alone = {n: _digest(get_spec(n).build()) for n in names}
    together = []
    threads = [threading.Thread(target=lambda n=n: together.append((n, _digest(get_spec(n).build()))))
               for n in names * 2]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(together) == sorted((n, alone[n]) for n in names * 2)


def _raise(error):
    def download(*args, **kwargs):
        raise error
    return download


def _chained(outer: Exception, inner: BaseException) -> Exception:
    try:
        try:
            raise inner
        except BaseException as e:
            raise outer from e
    except Exception as e:
        return e


@pytest.mark.parametrize("error,expected", [
    (urllib.error.URLError(socket.gaierror(-2, "Name or service not known")), "no network connection"),
    (_chained(huggingface_hub.errors.LocalEntryNotFoundError("An error happened while trying to locate the file"),
              socket.gaierror(-3, "Temporary failure in name resolution")), "no network connection"),
    (_chained(OSError("wrapped"), ConnectionRefusedError(111, "Connection refused")), "refused the connection"),
    (TimeoutError("timed out"), "did not answer in time"),
])
def test_network_errors_read_as_sentences(hub_cache, monkeypatch, error, expected):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _raise(error))
    state = load_model(TINY).weights
    assert state.is_random and state.offline
    assert expected in state.reason and "Errno" not in state.reason and "[" not in state.reason
    # torchvision's weights through torch hub: the same sentences.
    assert network_reason(error) == (state.reason.removeprefix("download failed: "), True)


def test_without_a_name_server_the_hub_is_not_tried(hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)

    def no_dns(host):
        assert host == "huggingface.co"
        raise socket.gaierror(-3, "Temporary failure in name resolution")

    monkeypatch.setattr(weights_module, "resolve_host", no_dns)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", _raise(AssertionError("the hub was tried")))
    state = load_model(TINY).weights
    assert state.offline and state.reason == "download failed: no network connection (the server's name cannot be" \
        " resolved)"


def test_torch_hub_download_error_reads_as_a_sentence(tmp_path, monkeypatch):
    old = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path))
    monkeypatch.setattr(weights_module.urllib.request, "urlopen",
                        _raise(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))))
    try:
        state = load_model("googlenet").weights
    finally:
        torch.hub.set_dir(old)
    assert state.reason == "download failed: no network connection (the server's name cannot be resolved)"


def test_download_reports_progress_and_cancels(hub_cache, monkeypatch):
    """The hub's download drives a progress bar class: its bytes reach `progress`, and Cancel stops it."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    state = _published(TINY.build())
    seen, token = [], CancelToken()

    def fake_download(repo_id, filename, *, tqdm_class, **kwargs):
        bar = tqdm_class(total=4000, initial=0, desc=filename)
        for _ in range(4):
            bar.update(1000)
        return str(_fill_cache(hub_cache, repo_id, state))

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    loaded = load_model(TINY, progress=lambda done, total: seen.append((done, total)))
    assert loaded.weights.kind == "pretrained" and "downloaded from https://huggingface.co/" + REPO in \
        loaded.weights.source
    assert seen == [(0, 4000), (1000, 4000), (2000, 4000), (3000, 4000), (4000, 4000)]
    assert _equal(loaded.module, state)

    def cancelling(done, total):
        if done >= 2000:
            token.cancel()

    calls = []

    def slow_download(repo_id, filename, *, tqdm_class, **kwargs):
        bar = tqdm_class(total=4000)
        for _ in range(4):
            calls.append(1)
            bar.update(1000)
        raise AssertionError("not cancelled")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", slow_download)
    other = dataclasses.replace(TINY, hub_weights=HubWeights("timm/not_cached"))
    state = load_model(other, progress=cancelling, cancel=token).weights
    # Cancelled during the second chunk: the download stops at the third.
    assert state.is_random and state.reason == "download cancelled" and len(calls) == 3


def test_retry_offline_keeps_the_weights_and_says_so(hub_cache, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download",
                        _raise(urllib.error.URLError(socket.gaierror(-2, "Name or service not known"))))
    first = load_model(TINY)
    before = {k: v.clone() for k, v in first.module.state_dict().items()}
    result = retry_download(first)
    assert not result.changed and result.loaded is first and _equal(first.module, before)
    assert result.message == ("still offline: no network connection (the server's name cannot be resolved)"
                              " — weights unchanged")
    # Once the file is there, the retry brings it.
    state = _published(TINY.build())
    _fill_cache(hub_cache, REPO, state)
    again = retry_download(first)
    assert again.changed and again.loaded is not first and _equal(again.loaded.module, state)
    assert "weights loaded" in again.message


def test_zoo_hub_ids_are_timm_s():
    """The repositories in the zoo are those timm's pretrained configs name (copied as data)."""
    timm = pytest.importorskip("timm")
    for name in ("inception_v4", "inception_resnet_v2"):
        cfg = timm.get_pretrained_cfg(name)
        hub = get_spec(name).hub_weights
        assert hub.repo_id == cfg.hf_hub_id and (cfg.hf_hub_filename or "pytorch_model.bin") in hub.filenames
        assert dataclasses.replace(hub).url == f"https://huggingface.co/{cfg.hf_hub_id}"


def test_timm_model_by_name_loads_timm_s_published_weights(hub_cache):
    """timm:NAME finds the repository timm's pretrained config names, loads it strictly into timm's own
    model, and preprocesses with that config's numbers."""
    timm = pytest.importorskip("timm")
    from timm.data import resolve_data_config

    from explorer.core.model.anycnn import open_model

    reference = timm.create_model("resnet18", pretrained=False)
    state = _published(reference)
    cfg = timm.get_pretrained_cfg("resnet18")
    _fill_cache(hub_cache, cfg.hf_hub_id, state)
    loaded = load_model(open_model("timm:resnet18"), outputs=1000)
    assert loaded.weights.kind == "pretrained" and cfg.hf_hub_id.replace("/", "--") in loaded.weights.source
    assert _equal(loaded.module, state)
    data = resolve_data_config({}, model=reference)
    t = loaded.transforms()
    assert list(t.crop_size) == [data["input_size"][-1]] and list(t.resize_size) == [
        int(data["input_size"][-1] / data["crop_pct"])]
    assert tuple(t.mean) == tuple(data["mean"]) and tuple(t.std) == tuple(data["std"])
    assert t.interpolation.value == data["interpolation"]
