"""Weights: find, download and load them without ever executing code from a file.

Resolution order for a zoo model: a file already in the cache (torch hub's for torchvision's
weights, the Hugging Face Hub's for timm's), then a download into that cache (with progress and
cancel), then — when the user names one — a local file. A failed or cancelled download leaves
random weights and says so (`WeightsState`), never silently.

Loading is all or nothing. Before the model is touched, every tensor of the file is checked: keys
and shapes, then layout (dense only), device (not meta), dtype (floating for floating parameters;
another floating precision is cast, with a note) and values (NaN or infinity refuse the file: such a
model predicts nothing, and quietly loading it would give NaN probabilities).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import socket
import ssl
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from explorer.core.cancel import Cancelled, CancelToken, ProgressCallback
from explorer.core.text import first_line

if TYPE_CHECKING:
    import torch

#: torchvision names checkpoints `<name>-<first hex digits of the sha256>.pth`.
_HASH_IN_NAME = re.compile(r"-([a-f0-9]*)\.")
WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")
RANDOM_WARNING = "random weights: predictions are meaningless"
#: What every page, record and view over an image says when the network's weights are random: its maps, curves and
#: sanity checks are computed as for any network, but there is nothing learned for them to show.
UNLEARNED_CAVEAT = ("random weights: this network has learned nothing, so its predictions, maps, curves and sanity "
                    "checks say nothing about what a trained network does")


@dataclass(frozen=True)
class WeightsState:
    """Where the weights of a loaded model came from, and why they are random if they are."""

    kind: str  # "pretrained" | "file" | "random"
    source: str
    reason: str | None = None
    #: Something the user should know about weights that did load (e.g. float16 cast to float32).
    note: str | None = None
    #: Random because the network could not be reached (a later retry may succeed).
    offline: bool = False
    #: The file the weights were read from (None: random, or none of their own, as a TorchScript file's).
    path: str | None = None

    @property
    def is_random(self) -> bool:
        return self.kind == "random"

    def describe(self) -> str:
        if self.is_random:
            return f"{RANDOM_WARNING} ({self.reason})" if self.reason else RANDOM_WARNING
        return f"{self.source} ({self.note})" if self.note else self.source


class WeightsError(ValueError):
    """A weight file cannot be read."""


class WeightsMismatchError(WeightsError):
    """A weight file does not fit the architecture; nothing was loaded."""

    def __init__(self, missing: list[str], unexpected: list[str], mismatched: list[str], shown: int = 5):
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        parts = []
        for title, keys in (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mismatched)):
            if keys:
                parts.append(f"{len(keys)} {title}: {_listed(keys, shown)}")
        super().__init__("weights do not fit this architecture; nothing was loaded — " + "; ".join(parts))


class WeightsContentError(WeightsError):
    """A weight file fits the architecture but its tensors cannot be used; nothing was loaded.

    `problems` maps a description ("sparse layout (sparse_coo)", "NaN or infinite values …") to its keys."""

    def __init__(self, problems: dict[str, list[str]], shown: int = 3):
        self.problems = problems
        parts = [f"{what} in {len(keys)} tensor{'s' if len(keys) > 1 else ''}: {_listed(keys, shown)}"
                 for what, keys in problems.items()]
        super().__init__("weights cannot be used; nothing was loaded — " + "; ".join(parts))


def _listed(keys: list[str], shown: int) -> str:
    more = f" … and {len(keys) - shown} more" if len(keys) > shown else ""
    return ", ".join(keys[:shown]) + more


def hub_checkpoint_path(url: str) -> Path:
    """Where torch.hub keeps (or would keep) the checkpoint downloaded from `url`."""
    import torch.hub

    name = os.path.basename(urllib.parse.urlparse(url).path)
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def download_file(
    url: str,
    dest: Path,
    *,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
    check_hash: bool = True,
    chunk_size: int = 1 << 16,
) -> Path:
    """Download `url` to `dest` atomically, reporting progress and honouring `cancel`.

    When the file name carries a hash prefix (torchvision's convention) the sha256 is checked.
    A partial file never remains at `dest`.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    sha = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".partial", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            total = resp.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            if progress:
                progress(0, total)
            while True:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                chunk = resp.read(chunk_size)
                if not chunk:
                    break
                out.write(chunk)
                sha.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total)
        if total is not None and done != total:
            raise OSError(f"download of {url} ended after {done} of {total} bytes")
        m = _HASH_IN_NAME.search(dest.name)
        if check_hash and m and m.group(1) and not sha.hexdigest().startswith(m.group(1)):
            raise OSError(f"downloaded file's sha256 does not start with {m.group(1)} as its name says")
        os.replace(tmp, dest)
        return dest
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from .safetensors or a torch pickle, never executing code from it."""
    import torch

    path = Path(path)
    if not path.exists():
        raise WeightsError(f"no such weight file: {path}")
    if not path.is_file():  # a folder, FIFO or device: never opened (a FIFO would block, /dev/zero never ends)
        raise WeightsError(f"{path} is not a regular file; weights are read from regular files only")
    _check_inflation(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            obj: Any = load_file(str(path), device="cpu")
        else:
            with warnings.catch_warnings():  # torch's notes on old storages or sparse checks: not the user's
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # any parse failure is the file's fault, reported as such
        first = first_line(e)
        # torch's refusal starts by suggesting weights_only=False, the code execution this loader exists to
        # refuse: say what the file holds instead (its pickle's first unsupported item).
        if first.startswith("Weights only load failed"):
            advice = ("Weights only load failed", "Please file an issue", "Check the documentation")
            why = [ln.strip() for ln in str(e).splitlines() if ln.strip() and not ln.strip().startswith(advice)]
            first = "not a weights file that loads without running code" + (f" ({why[0]})" if why else "")
        raise WeightsError(f"cannot read weights from {path.name}: {first}") from e
    # Training checkpoints often wrap the weights.
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(obj, dict) and isinstance(obj.get(key), dict):
            obj = obj[key]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise WeightsError(f"{path.name} holds no state dict of tensors")
    if all(k.startswith("module.") for k in obj):  # saved from DataParallel
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The metadata of a .safetensors file (its header's strings: how the weights were made), without
    loading a tensor; WeightsError when the file cannot be read as safetensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except Exception as e:  # a missing, truncated or foreign file: the file's fault
        raise WeightsError(f"cannot read the metadata of {Path(path).name}: {first_line(e)}") from e


def _check_inflation(path: Path) -> None:
    """A torch.save file is a zip archive: one that would inflate far past its size is refused unread."""
    import zipfile

    from explorer.core.model.archives import ArchiveError, read_archive

    if path.suffix == ".safetensors" or not zipfile.is_zipfile(path):
        return
    try:
        read_archive(path)
    except ArchiveError as e:
        raise WeightsError(f"cannot read weights from {path.name}: {e}") from None


def check_compatible(model, state_dict: dict[str, Any]) -> None:
    """Raise WeightsMismatchError unless `state_dict` fits `model` key for key and shape for shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    mismatched = [
        f"{k} {tuple(state_dict[k].shape)} ≠ {tuple(v.shape)}"
        for k, v in own.items()
        if k in state_dict and tuple(state_dict[k].shape) != tuple(v.shape)
    ]
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(missing, unexpected, mismatched)


def check_tensors(model, state_dict: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Check every tensor of a compatible `state_dict` against `model` without touching the model.

    Returns (the tensors in the model's own dtypes, a note on any cast or None). Raises
    WeightsContentError listing, by problem, the keys of sparse, quantised, meta, integer, complex,
    boolean or non-finite tensors."""
    import torch

    own = model.state_dict()
    problems: dict[str, list[str]] = {}
    cast: dict[tuple[str, str], int] = {}
    out: dict[str, Any] = {}
    for key, ref in own.items():
        t = state_dict[key]
        problem = None
        if t.layout != torch.strided:
            problem = f"sparse layout ({str(t.layout).removeprefix('torch.')})"
        elif t.is_quantized:
            problem = f"quantised dtype ({_dtype_name(t.dtype)})"
        elif t.device.type == "meta":
            problem = "meta device (no values)"
        elif ref.is_floating_point() and not t.is_floating_point():
            kind = "complex" if t.is_complex() else "boolean" if t.dtype == torch.bool else "integer"
            problem = f"{kind} dtype {_dtype_name(t.dtype)} (the model has {_dtype_name(ref.dtype)})"
        elif not ref.is_floating_point() and (t.is_complex() or t.is_floating_point() or t.dtype == torch.bool)\
                and t.dtype != ref.dtype:
            problem = f"dtype {_dtype_name(t.dtype)} (the model has {_dtype_name(ref.dtype)})"
        elif t.is_floating_point() and not bool(torch.isfinite(t).all()):
            problem = "NaN or infinite values (refused: such weights predict nothing)"
        if problem is not None:
            problems.setdefault(problem, []).append(key)
            continue
        if t.dtype != ref.dtype:
            if t.is_floating_point():
                pair = (_dtype_name(t.dtype), _dtype_name(ref.dtype))
                cast[pair] = cast.get(pair, 0) + 1
            t = t.to(ref.dtype)
            if t.is_floating_point() and not bool(torch.isfinite(t).all()):  # float64 beyond float32's range
                problems.setdefault(f"values beyond {_dtype_name(ref.dtype)}'s range", []).append(key)
                continue
        out[key] = t
    if problems:
        raise WeightsContentError(problems)
    note = "; ".join(f"{n} {a} tensor{'s' if n > 1 else ''} cast to {b}" for (a, b), n in cast.items()) or None
    return out, note


def _dtype_name(dtype) -> str:
    return str(dtype).removeprefix("torch.")


def apply_state_dict(model, state_dict: dict[str, Any]) -> str | None:
    """Load all of `state_dict` into `model`, or nothing at all; returns a note on any dtype cast.

    Every key, shape, layout, dtype and value is checked first (`check_compatible`,
    `check_tensors`); should torch still fail half-way, the model's previous tensors are restored."""
    check_compatible(model, state_dict)
    checked, note = check_tensors(model, state_dict)
    backup = {k: v.detach().clone() for k, v in model.state_dict().items()}
    try:
        model.load_state_dict(checked, strict=True)
    except Exception as e:
        model.load_state_dict(backup, strict=True)
        # torch's message spans lines ("Error(s) in loading…:" then the reason): one line for the user.
        text = " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__
        raise WeightsError(f"weights cannot be used; nothing was loaded — {text}") from e
    return note


#: `network_reason` of a file the hub does not have (the next file name is tried).
_NOT_ON_HUB = "the file is not on the Hugging Face Hub"


def network_reason(error: BaseException) -> tuple[str, bool]:
    """A failed download as a sentence, and whether it means the network could not be reached.

    "[Errno -2] Name or service not known" reads "no network connection (the server's name cannot be
    resolved)"; the chain of causes is searched, as libraries wrap the socket's error in their own."""
    chain: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo and len(chain) < 20:
        e = todo.pop()
        if e is None or e in chain:
            continue
        chain.append(e)
        # urllib keeps the socket's error in `reason`; the hub raises its own around httpx's.
        reason = getattr(e, "reason", None)
        todo += [e.__cause__, e.__context__, reason if isinstance(reason, BaseException) else None]
    names = {type(e).__name__ for e in chain}
    text = " ".join(str(e) for e in chain).lower()
    if "OfflineModeIsEnabled" in names:
        return "offline mode is on (HF_HUB_OFFLINE is set)", True
    if isinstance(error, urllib.error.HTTPError):
        return f"the server answered HTTP {error.code} ({error.reason})", False
    if {"EntryNotFoundError", "RemoteEntryNotFoundError", "RepositoryNotFoundError"} & names:
        return _NOT_ON_HUB, False
    if any(isinstance(e, socket.gaierror) for e in chain) or any(
            m in text for m in ("name or service not known", "temporary failure in name resolution",
                                "nodename nor servname", "getaddrinfo failed", "no address associated")):
        return "no network connection (the server's name cannot be resolved)", True
    if any(isinstance(e, ConnectionRefusedError) for e in chain) or "connection refused" in text:
        return "no network connection (the server refused the connection)", True
    if any(isinstance(e, (TimeoutError, socket.timeout)) for e in chain) or {"ConnectTimeout", "ReadTimeout",
                                                                            "TimeoutException"} & names:
        return "no network connection (the server did not answer in time)", True
    if any(isinstance(e, OSError) and e.errno in (101, 113, 65) for e in chain) or "network is unreachable" in text:
        return "no network connection (the network is unreachable)", True
    if any(isinstance(e, ssl.SSLError) for e in chain):
        return "the secure connection failed (check the system's certificates or proxy)", False
    if {"ConnectError", "LocalEntryNotFoundError"} & names or any(isinstance(e, ConnectionError) for e in chain):
        return "no network connection", True
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return first, False


def _download_failed(error: BaseException) -> WeightsState:
    why, offline = network_reason(error)
    return WeightsState("random", "none", f"download failed: {why}", offline=offline)


def resolve_pretrained(
    model,
    url: str | None,
    *,
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
) -> WeightsState:
    """Put the published weights into `model`: hub cache first, then a download; else say why not."""
    if url is None:
        return WeightsState("random", "none", "this architecture has no published weights")
    path = hub_checkpoint_path(url)
    if path.is_file():
        try:
            note = apply_state_dict(model, read_state_dict(path))
        except WeightsError as e:
            return WeightsState("random", "none", f"cached file {path} unusable: {e}")
        return WeightsState("pretrained", f"pretrained (torch hub cache: {path})", note=note, path=str(path))
    if not allow_download:
        return WeightsState("random", "none", "not in the torch hub cache and downloading is off")
    try:
        download_file(url, path, progress=progress, cancel=cancel, timeout=timeout)
    except Cancelled:
        return WeightsState("random", "none", "download cancelled")
    except (OSError, urllib.error.URLError, ValueError) as e:
        return _download_failed(e)
    try:
        note = apply_state_dict(model, read_state_dict(path))
    except WeightsError as e:
        return WeightsState("random", "none", f"downloaded file unusable: {e}")
    return WeightsState("pretrained", f"pretrained (downloaded from {url})", note=note, path=str(path))


def resolve_hub(
    model,
    hub,
    *,
    allow_download: bool = True,
    progress: ProgressCallback | None = None,
    cancel: CancelToken | None = None,
    timeout: float = 15.0,
) -> WeightsState:
    """Put the weights of a Hugging Face Hub repository (`zoo.HubWeights`) into `model`, as timm finds
    them: the hub's cache first (HF_HUB_CACHE / HF_HOME), then a download into it; else say why not.

    The file is read with safetensors, or torch.load(weights_only=True), and loaded all or nothing."""
    try:
        import huggingface_hub
        import huggingface_hub.constants  # read at each call: tests and users may point it elsewhere
    except ImportError:
        return WeightsState("random", "none", "huggingface_hub is not installed (pip install huggingface_hub)")
    for filename in hub.filenames:
        cached = huggingface_hub.try_to_load_from_cache(hub.repo_id, filename, revision=hub.revision)
        if isinstance(cached, str):
            return _load_hub_file(model, Path(cached), f"Hugging Face Hub cache: {cached}", "cached")
    if not allow_download:
        return WeightsState("random", "none", "not in the Hugging Face Hub cache and downloading is off")
    if huggingface_hub.constants.HF_HUB_OFFLINE:
        return WeightsState("random", "none", "not in the Hugging Face Hub cache, and the hub's offline mode is on"
                            " (HF_HUB_OFFLINE is set)", offline=True)
    try:
        # Without a name server the hub would retry for half a minute, logging each attempt.
        resolve_host(urllib.parse.urlparse(huggingface_hub.constants.ENDPOINT).hostname)
    except OSError as e:
        return _download_failed(e)
    last: BaseException | None = None
    hub_logger = logging.getLogger("huggingface_hub")
    level = hub_logger.level
    hub_logger.setLevel(logging.ERROR)  # its retry warnings: the outcome is told once, as a sentence
    try:
        for filename in hub.filenames:
            try:
                path = huggingface_hub.hf_hub_download(
                    hub.repo_id, filename, revision=hub.revision, etag_timeout=timeout,
                    tqdm_class=_progress_bar_class(progress, cancel))
            except Cancelled:
                return WeightsState("random", "none", "download cancelled")
            except Exception as e:  # the hub's errors are many; each is told as a sentence
                last = e
                if network_reason(e)[0] == _NOT_ON_HUB:
                    continue  # the next file name (timm's repositories hold both)
                break
            else:
                return _load_hub_file(model, Path(path), f"downloaded from {hub.url}", "downloaded")
    finally:
        hub_logger.setLevel(level)
    return _download_failed(last)


def resolve_host(host: str | None) -> None:
    """Look `host` up (raises socket.gaierror without a name server): a quick test for a network."""
    if host:
        socket.getaddrinfo(host, 443)


def _load_hub_file(model, path: Path, where: str, how: str) -> WeightsState:
    try:
        note = apply_state_dict(model, read_state_dict(path))
    except WeightsError as e:
        return WeightsState("random", "none", f"{how} file {path} unusable: {e}")
    return WeightsState("pretrained", f"pretrained ({where})", note=note, path=str(path))


def _progress_bar_class(progress: ProgressCallback | None, cancel: CancelToken | None):
    """A stand-in for tqdm that huggingface_hub's download drives: it reports bytes through `progress`
    and stops the download (raising Cancelled) at the first chunk after `cancel` is set.

    The hub's HTTP download makes one bar; its Xet download makes two (bytes written, bytes
    transferred): only the first bar made reports progress, every bar checks `cancel`."""
    made = []

    class ProgressBar:
        format_dict: dict = {}

        def __init__(self, *args, total=None, initial=0, **kwargs):
            self.total, self.n = total, initial
            self._reports = not made
            made.append(self)
            self._report()

        def _report(self):
            if cancel is not None:
                cancel.raise_if_cancelled()
            if progress is not None and self._reports:
                progress(int(self.n), int(self.total) if self.total else None)

        def update(self, n=1):
            self.n += n
            self._report()

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def __getattr__(self, name):  # tqdm's display methods (close, set_postfix_str, refresh…): nothing to do
            return lambda *args, **kwargs: None

    return ProgressBar


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file, in hex."""
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def shipped_accuracy(shipped) -> str | None:
    """What the training of shipped weights (`zoo.ShippedWeights`) measured, from the file's metadata:
    'accuracy 99.9 % on 1200 fresh images'; None when the file does not say (or cannot be read)."""
    try:
        meta = safetensors_metadata(shipped.path)
        accuracy, images = float(meta["accuracy"]), int(meta["eval_images"])
    except (WeightsError, KeyError, ValueError):
        return None
    return f"accuracy {100 * accuracy:.1f} % on {images} fresh images"


def load_shipped(model, shipped) -> WeightsState:
    """Put the weights that ship inside the package (`zoo.ShippedWeights`) into `model`: the file's sha256 is
    checked first, then it is read and loaded as any weights file (safetensors, all or nothing). A missing,
    damaged or replaced file leaves random weights and says so."""
    path = Path(shipped.path)
    if not path.is_file():
        return WeightsState("random", "none", f"the shipped weights file {path.name} is missing from this"
                            f" installation (looked for {path})")
    digest = file_sha256(path)
    if digest != shipped.sha256:
        return WeightsState("random", "none", f"the shipped weights file {path} is not the one this version ships"
                            f" (sha256 {digest[:12]}… where {shipped.sha256[:12]}… was recorded)")
    try:
        note = apply_state_dict(model, read_state_dict(path))
    except WeightsError as e:
        return WeightsState("random", "none", f"shipped file {path} unusable: {e}")
    made = "; ".join(t for t in (shipped.description, shipped_accuracy(shipped)) if t)
    return WeightsState("pretrained", f"shipped with the explorer ({path.name}{': ' + made if made else ''})",
                        note=note)


def load_weights_file(model, path: str | os.PathLike) -> WeightsState:
    """Load a user-named weight file into `model` (all or nothing); raises WeightsError, whose
    message names the file."""
    state_dict = read_state_dict(path)
    try:
        note = apply_state_dict(model, state_dict)
    except WeightsError as e:
        e.args = (f"{Path(path).name}: {e}",)
        raise
    return WeightsState("file", f"file: {Path(path).name}", note=note, path=os.path.abspath(path))
