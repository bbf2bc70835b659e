"""Files the commands and the window write: each appears whole or not at all, and never over an input.

A file is written to a temporary file beside its destination (the same folder, so the rename is atomic),
flushed, fsynced and checked for size, then renamed over the destination with os.replace. Any failure —
a full disk, a folder in the way, a name too long, Ctrl-C — removes the temporary file and leaves the
destination, and any older file there, as it was. An OSError becomes an OutputError: one line naming
the file and the reason.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import signal
import stat
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path

#: The longest file name (in bytes) of the usual file systems (ext4, XFS, Btrfs, APFS, NTFS in UTF-16 units).
NAME_MAX = 255

_REASONS = {
    errno.ENOSPC: "no space left on the device",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large (the file system's or the process's file-size limit)",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
    errno.EISDIR: "is a folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.ENAMETOOLONG: "file name too long",
    errno.ENOENT: "no such folder",
    errno.EIO: "input/output error",
    errno.ENOTEMPTY: "a folder of that name is in the way",
    errno.EEXIST: "a file of that name is in the way",
}


def reason(err: OSError) -> str:
    """An OSError's reason in a few words, without the path (the message names it once)."""
    return _REASONS.get(err.errno) or (err.strerror or str(err) or type(err).__name__)


class OutputError(OSError):
    """An output that was not written; str() is one line naming the file and why. An OSError, as the
    failures it reports, so that the window's job runner shows it as the user's problem, not a bug."""

    def __init__(self, path: str | os.PathLike, why: str, action: str = "write"):
        self.path = str(path)
        self.reason = why
        super().__init__(f"cannot {action} {self.path}: {why}")


class Inputs:
    """The files a command reads, by identity (device, inode), so that no output replaces one of them
    whatever path names it (another spelling, a symbolic or a hard link)."""

    def __init__(self, paths: Iterable[str | os.PathLike] = ()):
        self._ids: set[tuple[int, int]] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str | os.PathLike) -> None:
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return
        if stat.S_ISREG(st.st_mode):
            self._ids.add((st.st_dev, st.st_ino))

    def __contains__(self, path: object) -> bool:
        try:
            st = os.stat(path)  # type: ignore[arg-type]
        except (OSError, ValueError, TypeError):
            return False
        return (st.st_dev, st.st_ino) in self._ids

    def check(self, path: str | os.PathLike) -> None:
        """OutputError when writing `path` would replace one of the inputs."""
        if path in self:
            raise OutputError(path, "it is one of the inputs; not overwritten")


def fit_stem(stem: str, suffix_bytes: int, limit: int = NAME_MAX) -> str:
    """`stem`, shortened when it and a suffix of `suffix_bytes` bytes would exceed `limit` bytes: cut at a
    character boundary and followed by `~` and 8 hex digits of the whole stem's hash, so that the same stem
    always gives the same name and two long stems that share their start stay apart."""
    raw = os.fsencode(stem)
    if len(raw) + suffix_bytes <= limit:
        return stem
    tag = "~" + hashlib.blake2b(raw, digest_size=4).hexdigest()
    room = max(0, limit - suffix_bytes - len(tag))
    cut = stem
    while cut and len(os.fsencode(cut)) > room:
        cut = cut[:-1]
    return cut + tag


def make_folder(path: str | os.PathLike) -> Path:
    """Create folder `path` and its parents (an existing folder is fine); OutputError when it cannot be."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise OutputError(path, "a file of that name is in the way", "create the folder") from None
    except OSError as e:
        raise OutputError(path, reason(e), "create the folder") from None
    return path


def _umask() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_temp(path: Path, data: bytes) -> str:
    """`data` in a new temporary file beside `path`, flushed to the disk and of the right size; its name."""
    short = path.name[:24]
    fd, tmp = tempfile.mkstemp(prefix=f".{short}.", suffix=".part", dir=path.parent)
    try:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)  # a replaced file keeps its permissions
        except OSError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        if os.fstat(fd).st_size != len(data):
            raise OSError(errno.EIO, "the written file is not the size written")
    except BaseException:
        os.close(fd)
        _remove(tmp)
        raise
    os.close(fd)
    return tmp


def _remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


def write_files(files: Mapping[str | os.PathLike, bytes], *, inputs: Inputs | None = None,
                report: Callable[[], None] | None = None) -> list[Path]:
    """Write several files as one result (a map's .npy and its .png), each whole or not at all.

    Every temporary file is written and checked before any is renamed into place, so that a failure leaves
    none of them. `report` (the line that announces the files) runs right after the renames with Ctrl-C held
    back, so that a file is in place exactly when its line has been written. OutputError names the first
    file that could not be written; a file that is one of `inputs` is refused."""
    items = [(Path(p), bytes(data)) for p, data in files.items()]
    paths = [p for p, _ in items]
    for p in paths:
        if inputs is not None:
            inputs.check(p)
        if os.path.isdir(p):  # (not Path.is_dir: a name too long would raise here, not below)
            raise OutputError(p, "a folder of that name is in the way")
    temps: list[str] = []
    try:
        for p, data in items:
            try:
                temps.append(_write_temp(p, data))
            except OSError as e:
                raise OutputError(p, reason(e)) from None
        with interrupts_deferred():
            for i, (p, tmp) in enumerate(zip(paths, temps)):
                try:
                    os.replace(tmp, p)
                except OSError as e:  # (rare: the temporary files are written) none of the result stays
                    for placed in paths[:i]:
                        _remove(str(placed))
                    raise OutputError(p, reason(e)) from None
                temps[i] = ""
            if report is not None:
                report()
    finally:
        for tmp in temps:
            if tmp:
                _remove(tmp)
    return paths


def write_file(path: str | os.PathLike, data: bytes, *, inputs: Inputs | None = None,
               report: Callable[[], None] | None = None) -> Path:
    """Write one file whole or not at all (see write_files)."""
    return write_files({path: data}, inputs=inputs, report=report)[0]


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Ctrl-C (SIGINT) waits until the block is over, then raises KeyboardInterrupt as usual: a file
    renamed into place and the line that reports it happen together or not at all. Only the main thread
    can hold signals back; elsewhere (a worker of the window) the block runs as is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    try:
        previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    except (ValueError, OSError):  # no signals here (an embedded interpreter)
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught and previous is not signal.SIG_IGN:
            if callable(previous):
                previous(signal.SIGINT, None)
            else:
                raise KeyboardInterrupt
