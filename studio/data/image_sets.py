"""An uploaded set of pictures: a zip of one data file and its pictures, laid out as LLaMA-Factory's mllm_demo is
(the data's picture paths relative to the data file's folder in the archive), unpacked into the dataset folder.

An archive comes from a browser, so nothing in it is trusted: a member name that is absolute, climbs ('..'), holds
a backslash or a control character, or is a link, is refused; so is an encrypted member, and an archive whose
members would unpack to more than MAX_UNPACKED_BYTES, or one member more than MAX_RATIO times its packed size
(a zip bomb). The sizes an archive declares are not believed either: unpacking stops at the declared size.
Only the data file and the pictures under its folder are unpacked; anything else in the archive is left out.
"""

from __future__ import annotations

import stat
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from studio.data.readers import SUPPORTED_SUFFIXES
from studio.data.registry import DataError

ARCHIVE_SUFFIX = ".zip"
PICTURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
DATA_SUFFIXES = tuple(s for s in SUPPORTED_SUFFIXES if s != ".txt")  # pretraining text has no pictures
MAX_MEMBERS = 50_000
MAX_UNPACKED_BYTES = 2 * 2**30
MAX_RATIO = 200  # PNG drawings pack well, but not a thousand to one
_CHUNK = 1 << 20


@dataclass(frozen=True)
class ImageSet:
    """What an archive holds: its data file and, relative to that file's folder, its pictures (member names)."""

    archive: Path
    data: str  # member name of the data file
    pictures: dict[str, str]  # path relative to the data file's folder -> member name

    @property
    def data_name(self) -> str:
        return PurePosixPath(self.data).name


def is_image_set(path: str | Path) -> bool:
    return Path(path).suffix.lower() == ARCHIVE_SUFFIX


def open_image_set(path: str | Path, display: str) -> ImageSet:
    """The archive's data file and pictures, every member checked; DataError naming `display` (the file the user
    knows) and what to fix."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as error:
        raise DataError("data.archive_unreadable", file=display, error=error) from None
    files = [member for member in members if not member.is_dir()]
    if len(files) > MAX_MEMBERS:
        raise DataError("data.archive_too_many", file=display, count=len(files), limit=MAX_MEMBERS)
    for member in files:
        _check_member(member, display)
    names = [member.filename for member in files]
    if len(set(names)) != len(names):  # the second of two members of one name would replace the checked first
        twice = next(name for name in names if names.count(name) > 1)
        raise DataError("data.archive_member_twice", file=display, member=twice)
    if sum(member.file_size for member in files) > MAX_UNPACKED_BYTES:
        raise DataError("data.archive_too_large", file=display, limit=MAX_UNPACKED_BYTES // 2**30)
    data = [m.filename for m in files if PurePosixPath(m.filename).suffix.lower() in DATA_SUFFIXES and _seen(m)]
    if len(data) != 1:
        found = ", ".join(data) or "-"
        raise DataError("data.archive_data_files", file=display, found=found, suffixes=", ".join(DATA_SUFFIXES))
    base = PurePosixPath(data[0]).parent
    pictures = {
        str(PurePosixPath(m.filename).relative_to(base)): m.filename
        for m in files
        if PurePosixPath(m.filename).suffix.lower() in PICTURE_SUFFIXES
        and PurePosixPath(m.filename).is_relative_to(base)
        and _seen(m)
    }
    return ImageSet(path, data[0], pictures)


def _seen(member: zipfile.ZipInfo) -> bool:
    """Not a file a system adds of its own (macOS's __MACOSX folder and ._ copies, hidden files)."""
    return not any(part.startswith((".", "__MACOSX")) for part in PurePosixPath(member.filename).parts)


def _check_member(member: zipfile.ZipInfo, display: str) -> None:
    name = member.filename
    parts = PurePosixPath(name).parts
    unsafe = (
        name.startswith("/")
        or "\\" in name
        or ".." in parts
        or (parts and ":" in parts[0])
        or any(ord(c) < 32 or ord(c) == 127 for c in name)
    )
    if unsafe or stat.S_ISLNK(member.external_attr >> 16):
        raise DataError("data.archive_member_unsafe", file=display, member=name)
    if member.flag_bits & 0x1:
        raise DataError("data.archive_encrypted", file=display, member=name)
    if member.file_size > MAX_RATIO * max(member.compress_size, 1) and member.file_size > _CHUNK:
        raise DataError("data.archive_bomb", file=display, member=name)


def extract(image_set: ImageSet, member: str, target: Path) -> None:
    """One member written to `target` (created, never replacing a file), at most the size the archive declares."""
    target.parent.mkdir(parents=True, exist_ok=True)
    written = 0
    try:
        with zipfile.ZipFile(image_set.archive) as archive:
            info = archive.getinfo(member)
            with archive.open(info) as source, open(target, "xb") as sink:
                while chunk := source.read(_CHUNK):
                    written += len(chunk)
                    if written > info.file_size:  # the archive said less than it holds
                        raise DataError("data.archive_bomb", file=image_set.archive.name, member=member)
                    sink.write(chunk)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # zipfile stops at the declared size: a bad CRC
        raise DataError("data.archive_unreadable", file=image_set.archive.name, error=error) from None


def unpack(image_set: ImageSet, folder: Path, data_target: Path, pictures: bool = True) -> None:
    """The data file to `data_target` and (with `pictures`) every picture under `folder` by its path relative to
    the data file."""
    extract(image_set, image_set.data, data_target)
    for relative, member in image_set.pictures.items() if pictures else ():
        extract(image_set, member, folder / relative)
