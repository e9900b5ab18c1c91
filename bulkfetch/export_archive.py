"""Reading Strava's account export as the athlete downloaded it: the zip, or the folder it unpacks to.

Only what the import keeps is ever read: `activities.csv`, `profile.csv` and the activity files the
CSV names, one member at a time, streamed (an export of several GB is never read whole, nor unpacked
to a second copy; `media/` and the other CSVs are not touched). A zip with a member name that could not
be unpacked into a folder safely (`unsafe_path`: `..`, an absolute path, a control character) is refused
before anything is read from it.

The export's top is the folder that holds `activities.csv`: the zip's (or folder's) top, or its one
subfolder when the athlete zipped the unpacked folder again.
"""

from __future__ import annotations

import errno
import stat
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Protocol

from bulkfetch.errors import ExportError

ACTIVITIES_CSV = "activities.csv"
PROFILE_CSV = "profile.csv"
MAX_CSV_BYTES = 256 << 20  # 40 years of daily activities are a few MB
# The longest file name the import can keep: file systems take 255 bytes (ext4, APFS, NTFS), and a file is
# written under a temporary name first, ".<name>.tmp-<pid>-<8 hex digits>" (bulkfetch.store), up to 23
# bytes longer. A member whose name has a longer part is not imported; the others are.
NAME_MAX_BYTES = 255 - 32
CHUNK_BYTES = 1 << 20
ZIP_START = b"PK\x03\x04"  # a zip's first member header (https://pkware.cachefly.net/webdocs/APPNOTE/APPNOTE-6.3.10.TXT)


@dataclass(frozen=True)
class Member:
    """One file of the export, named relative to its top ("activities/123.fit.gz")."""

    name: str
    size: int
    crc32: int | None  # the zip's CRC-32 of the content (free to read); None in a folder


class Export(Protocol):
    """An opened export: a zip or a folder (see `open_export`)."""

    source: Path

    def member(self, name: str) -> Member | None: ...

    def open(self, name: str) -> IO[bytes]:
        """The member's bytes as a stream; raises MemberError if it cannot be opened."""
        ...


@contextmanager
def open_export(path: Path) -> Iterator[Export]:
    """The export at `path` (a zip, or an unpacked folder). Raises ExportError, naming the problem,
    if it is missing, not an export, or unsafe."""
    if not path.exists():
        what = "is a symbolic link to nothing (or a loop)" if path.is_symlink() else "does not exist"
        raise ExportError(f"{path} {what}", hint="pass the export's zip or the folder it unpacked to")
    if path.is_dir():
        yield _FolderExport(path, _folder_top(path))
        return
    if not zipfile.is_zipfile(path):
        raise _not_a_zip(path)
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise ExportError(f"{path} cannot be read as a zip ({exc})", hint="download the export again") from None
    with archive:
        yield _ZipExport(path, archive)


def _not_a_zip(path: Path) -> ExportError:
    """Why a file is no zip that can be opened. A zip's table of contents is at its end: one that starts
    as a zip without it, or a `.zip` that starts as none, was cut short or damaged (a download stopped
    part-way is the common cause)."""
    again = "download the export again (strava.com: Settings, My Account, 'Download or Delete Your Account')"
    try:
        with path.open("rb") as stream:
            start = stream.read(len(ZIP_START))
    except OSError as exc:
        return ExportError(f"{path} cannot be read ({exc.strerror or exc})", hint="check its permissions")
    if start == ZIP_START:
        return ExportError(f"{path} looks cut short or damaged: it starts as a zip but its end (the zip's table of "
                           f"contents) is missing ({path.stat().st_size:,} bytes)", hint=again)
    if path.suffix.lower() == ".zip":
        return ExportError(f"{path} looks damaged: it is named .zip but is none"
                           f"{' (it is empty)' if not start else ''}", hint=again)
    return ExportError(f"{path} is neither a zip nor a folder",
                       hint="pass the zip Strava e-mailed a link to (export_<id>.zip) or its unpacked folder")


class MemberError(Exception):
    """One member of the export cannot be read (a damaged zip entry, an unreadable file): that file is
    not imported, the rest is. `lasting`: no later try can read it from this export (a link loop), so it
    is a bad file, not one to try again."""

    def __init__(self, name: str, reason: str, *, lasting: bool = False) -> None:
        super().__init__(f"{name} cannot be read ({reason})")
        self.reason = f"cannot be read ({reason})"
        self.lasting = lasting


def read_small(export: Export, name: str) -> bytes | None:
    """A CSV of the export, whole; None if the export has none of that name. Raises ExportError if it
    cannot be read."""
    try:
        member = export.member(name)
        if member is None:
            return None
        if member.size > MAX_CSV_BYTES:
            raise ExportError(f"{export.source}: {name} is {member.size:,} bytes, too big for an export's {name}",
                              hint="pass the export Strava made, unchanged")
        return b"".join(_chunks(export, name))
    except MemberError as exc:
        raise ExportError(f"{export.source}: {exc}", hint="download the export again") from None


def copy_member(export: Export, name: str, sink: IO[bytes]) -> tuple[int, int]:
    """Stream a member into `sink`, a chunk at a time; its size and CRC-32. Raises MemberError if the
    member cannot be read to its end (a write error of `sink` is an OSError, as it comes)."""
    size, crc = 0, 0
    for chunk in _chunks(export, name):
        sink.write(chunk)
        size += len(chunk)
        crc = zlib.crc32(chunk, crc)
    return size, crc


def member_crc32(export: Export, member: Member) -> int:
    """The member's CRC-32: the zip's, or read from the folder's file (MemberError if it cannot be)."""
    return member.crc32 if member.crc32 is not None else _crc32(_chunks(export, member.name))


def file_crc32(path: Path) -> int:
    """The CRC-32 of a file (OSError if it cannot be read)."""
    with path.open("rb") as stream:
        return _crc32(iter(lambda: stream.read(CHUNK_BYTES), b""))


def _crc32(chunks: Iterable[bytes]) -> int:
    crc = 0
    for chunk in chunks:
        crc = zlib.crc32(chunk, crc)
    return crc


def _chunks(export: Export, name: str) -> Iterator[bytes]:
    """The member's bytes, CHUNK_BYTES at a time; a zip entry's CRC-32 is checked at its end."""
    with export.open(name) as stream:
        while True:
            try:
                chunk = stream.read(CHUNK_BYTES)
            except (zipfile.BadZipFile, zlib.error, EOFError, OSError) as exc:
                raise MemberError(name, str(exc)) from None
            if not chunk:
                return
            yield chunk


def check_name_length(name: str) -> None:
    """Raise MemberError if a part of the member's name is longer than NAME_MAX_BYTES: that file is not
    imported, the others are."""
    longest = max(len(part.encode()) for part in name.split("/"))
    if longest > NAME_MAX_BYTES:
        raise MemberError(name, f"a name of {longest:,} bytes, too long to keep: at most {NAME_MAX_BYTES}")


def unsafe_path(name: str) -> str | None:
    """Why a path the export names (a zip member, a Filename cell of activities.csv) cannot be written
    under a folder as it stands ("is absolute": `/`, `\\`, a drive `C:`; "climbs out of its folder":
    `..`; "holds a control character": NUL cannot be in a file name at all). None if it can."""
    parts = name.replace("\\", "/").split("/")
    if name.startswith(("/", "\\")) or ":" in parts[0]:
        return "is absolute"
    if ".." in parts:
        return "climbs out of its folder (..)"
    if any(ord(char) < 32 or ord(char) == 127 for char in name):
        return "holds a control character"
    return None


class _ZipExport:
    def __init__(self, source: Path, archive: zipfile.ZipFile) -> None:
        self.source = source
        self._archive = archive
        infos = archive.infolist()
        if unsafe := [(info.filename, why) for info in infos if (why := unsafe_path(info.filename))]:
            (name, why), more = unsafe[0], f" (and {len(unsafe) - 1:,} more)" if len(unsafe) > 1 else ""
            raise ExportError(f"{source} is unsafe: its member {name!r}{more} {why}, it cannot be unpacked into "
                              "a folder; nothing was imported", hint="use the zip exactly as Strava made it")
        top = _zip_top(source, [info.filename for info in infos if not info.is_dir()])
        self._members = {info.filename[len(top):]: info for info in infos
                         if not info.is_dir() and info.filename.startswith(top)}

    def member(self, name: str) -> Member | None:
        info = self._members.get(name)
        if info is None:
            return None
        check_name_length(name)
        return Member(name, info.file_size, info.CRC)

    def open(self, name: str) -> IO[bytes]:
        try:
            return self._archive.open(self._members[name])
        except (zipfile.BadZipFile, NotImplementedError, RuntimeError, OSError) as exc:  # RuntimeError: encrypted
            raise MemberError(name, str(exc)) from None


def _zip_top(source: Path, names: list[str]) -> str:
    """"" or "<folder>/": where activities.csv is, at the top or one folder down."""
    tops = sorted((name[: -len(ACTIVITIES_CSV)] for name in names
                   if PurePosixPath(name).name == ACTIVITIES_CSV and name.count("/") <= 1),
                  key=len)
    if not tops:
        raise ExportError(f"{source} is not a Strava account export: it has no {ACTIVITIES_CSV}",
                          hint="pass the zip from strava.com's 'Download or Delete Your Account' page")
    return tops[0]


class _FolderExport:
    """An unpacked export. Its symbolic links are followed wherever they point: the folder is on the
    athlete's own disk and its links are theirs (an `activities/` moved to another disk and linked back;
    a zip's members are never links). Only regular files are read: a folder, a pipe or a device under a
    file's name is reported, never opened (a pipe would block the import)."""

    def __init__(self, source: Path, top: Path) -> None:
        self.source = source
        self._top = top

    def _path(self, name: str) -> tuple[Path, int] | None:
        """The member's file and its size; None if there is none. Raises MemberError if something that
        is no regular file stands there, or it cannot be looked at (a link loop, a name too long)."""
        check_name_length(name)
        path = self._top / name
        try:
            status = path.stat()
        except (FileNotFoundError, NotADirectoryError):  # a link to nothing is missing too
            return None
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # the links point at each other: no later import resolves them
                raise MemberError(name, "a loop of symbolic links, it never reaches a file", lasting=True) from None
            raise MemberError(name, exc.strerror or str(exc)) from None
        except ValueError as exc:  # a NUL in the name (activities.csv refuses one before it gets here)
            raise MemberError(name, str(exc)) from None
        if not stat.S_ISREG(status.st_mode):
            raise MemberError(name, "a folder, not a file" if stat.S_ISDIR(status.st_mode) else "not a regular file")
        return path, status.st_size

    def member(self, name: str) -> Member | None:
        found = self._path(name)
        return None if found is None else Member(name, found[1], None)

    def open(self, name: str) -> IO[bytes]:
        found = self._path(name)
        try:
            if found is None:
                raise FileNotFoundError(name)
            return found[0].open("rb")
        except OSError as exc:
            raise MemberError(name, exc.strerror or str(exc)) from None


def _folder_top(path: Path) -> Path:
    if (path / ACTIVITIES_CSV).is_file():
        return path
    if (path / ACTIVITIES_CSV).is_symlink():
        raise ExportError(f"{path / ACTIVITIES_CSV} is a symbolic link to nothing (or a loop)",
                          hint="link it to the export's activities.csv, or copy that file there")
    below = [child for child in sorted(path.iterdir()) if child.is_dir() and (child / ACTIVITIES_CSV).is_file()]
    if len(below) == 1:
        return below[0]
    raise ExportError(f"{path} is not a Strava account export: it has no {ACTIVITIES_CSV}",
                      hint="pass the folder the export's zip unpacked to (it holds activities.csv)")
