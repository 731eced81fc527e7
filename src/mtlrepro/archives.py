"""Fetching and unpacking the image benchmarks' archives, safely.

* `fetch(url, dest, md5)` copies a URL (https://, or file:// for a local copy) to `dest` through a
  temporary file and keeps it only when its md5 matches the published one.
* `safe_extract(archive, dest)` unpacks a .tar(.gz/.bz2/.xz) or .zip archive into a new folder
  `dest`. Every member is checked before anything is written: a member whose path is absolute,
  climbs out of `dest` (`..`), is a symbolic or hard link, a device, a FIFO or anything but a
  regular file or folder is refused with an error naming the archive and the member, and
  nothing is extracted. The folder appears only once every member has been written (atomic_dir).
"""
from __future__ import annotations

import hashlib
import os
import shutil
import stat
import tarfile
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath

from .io import MTLReproError, atomic_dir, atomic_path

CHUNK = 1 << 20


def md5_file(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, dest: Path, md5: str | None, timeout_s: float = 60.0) -> Path:
    """`url` copied to `dest`; with `md5`, a file that does not match is removed and refused."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response, atomic_path(dest) as tmp:
            with open(tmp, "wb") as out:
                shutil.copyfileobj(response, out, CHUNK)
            if md5 is not None and (got := md5_file(tmp)) != md5:
                raise MTLReproError(f"checksum mismatch for {url}: expected md5 {md5}, got {got}")
    except (OSError, ValueError) as err:  # URLError is an OSError; ValueError: a malformed URL
        raise MTLReproError(f"cannot fetch {url}: {err}") from None
    return dest


def _member_path(archive: Path, name: str) -> PurePosixPath:
    """The member's path relative to the target folder, refused if it could land outside it."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or name.startswith("/") or (path.parts and ":" in path.parts[0]):
        raise MTLReproError(f"{archive}: unsafe archive member {name!r} (absolute path); nothing extracted")
    if ".." in path.parts:
        raise MTLReproError(f"{archive}: unsafe archive member {name!r} (climbs out of the target "
                            f"folder with '..'); nothing extracted")
    return path


def _tar_members(archive: Path, tar: tarfile.TarFile) -> list[tuple[tarfile.TarInfo, PurePosixPath]]:
    members = []
    for info in tar.getmembers():
        path = _member_path(archive, info.name)
        if info.issym() or info.islnk():
            raise MTLReproError(f"{archive}: archive member {info.name!r} is a link "
                                f"(to {info.linkname!r}); links are refused, nothing extracted")
        if not (info.isfile() or info.isdir()):
            raise MTLReproError(f"{archive}: archive member {info.name!r} is not a regular file or "
                                f"folder (device, FIFO...); nothing extracted")
        members.append((info, path))
    return members


def _zip_members(archive: Path, zf: zipfile.ZipFile) -> list[tuple[zipfile.ZipInfo, PurePosixPath]]:
    members = []
    for info in zf.infolist():
        path = _member_path(archive, info.filename)
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            what = "a link" if kind == stat.S_IFLNK else "not a regular file or folder"
            raise MTLReproError(f"{archive}: archive member {info.filename!r} is {what}; nothing extracted")
        members.append((info, path))
    return members


def _write_member(source, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target, "xb") as out:  # "x": a name given twice in one archive is an error
        shutil.copyfileobj(source, out, CHUNK)


def _open_error(archive: Path, err: Exception) -> MTLReproError:
    return MTLReproError(f"{archive}: not a readable archive ({type(err).__name__}: {err})")


def safe_extract(archive: Path, dest: Path) -> Path:
    """Unpacks `archive` into the new folder `dest` (replaced as a whole); see the module docstring."""
    archive = Path(archive)
    if not archive.is_file():
        raise MTLReproError(f"missing archive: {archive}")
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                members = _zip_members(archive, zf)
                with atomic_dir(dest) as tmp:
                    for info, path in members:
                        if info.is_dir():
                            (tmp / path).mkdir(parents=True, exist_ok=True)
                        else:
                            with zf.open(info) as src:
                                _write_member(src, tmp / path)
            return dest
        with tarfile.open(archive, "r:*") as tar:
            members = _tar_members(archive, tar)
            with atomic_dir(dest) as tmp:
                for info, path in members:
                    if info.isdir():
                        (tmp / path).mkdir(parents=True, exist_ok=True)
                    else:
                        _write_member(tar.extractfile(info), tmp / path)
    except MTLReproError:
        raise
    except FileExistsError as err:
        raise MTLReproError(f"{archive}: archive member {os.path.basename(str(err.filename))!r} "
                            f"appears twice; nothing extracted") from None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as err:
        raise _open_error(archive, err) from None
    return dest
