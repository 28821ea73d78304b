"""An uploaded set of pictures: a zip of a data file and its pictures, detected, checked where it was unpacked, moved
beside the data in the dataset folder; an archive that climbs, links, bombs or lies is refused and leaves nothing."""

import json
import stat
import zipfile

import pytest
from PIL import Image

from studio.config import DataConfig
from studio.data.image_sets import open_image_set
from studio.data.prepare import load_conversations
from studio.data.register import detect, register
from studio.data.registry import REGISTRY_FILE, DataError, load_registry

TURNS = [{"role": "user", "content": "<image>几个红色的圆？"}, {"role": "assistant", "content": "图中有1个红色的圆。"}]


@pytest.fixture
def dataset_dir(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / REGISTRY_FILE).write_text(json.dumps({"existing": {"file_name": "existing.json"}}), encoding="utf-8")
    return folder


def _png(colour="red") -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (56, 56), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _zip(path, members: dict[str, bytes | str], links: tuple[str, ...] = ()):
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        for name in links:
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, "/etc/passwd")
    return path


def _records(*pictures):
    return json.dumps([{"messages": TURNS, "images": [picture]} for picture in pictures], ensure_ascii=False)


def _untouched(folder):
    return sorted(p.name for p in folder.iterdir()) == [REGISTRY_FILE]


def test_a_set_in_llamafactorys_layout_is_detected_registered_and_read(tmp_path, dataset_dir):
    members = {
        "shapes/shapes.json": _records("shapes_data/1.png", "shapes_data/2.png"),
        "shapes/shapes_data/1.png": _png("red"),
        "shapes/shapes_data/2.png": _png("blue"),
        "shapes/shapes_data/unused.png": _png("green"),
        "__MACOSX/shapes/._shapes.json": b"junk",
        "shapes/README.txt": "left out",
    }
    archive = _zip(tmp_path / "shapes.zip", members)
    proposal = detect(archive)
    assert proposal.file_name == "shapes.json" and proposal.pictures == 3 and proposal.num_rows == 2
    assert proposal.entry["columns"]["images"] == "images" and "vision-language model" in proposal.note
    spec = register(dataset_dir, "my_shapes", archive, proposal.entry).spec
    assert spec.file_name == "my_shapes.json" and "my_shapes" in load_registry(dataset_dir)
    assert sorted(p.name for p in (dataset_dir / "shapes_data").iterdir()) == ["1.png", "2.png"]  # used ones only
    assert not [p for p in dataset_dir.iterdir() if p.name.startswith(".upload-")]
    [loaded] = load_conversations(DataConfig(dataset_dir=str(dataset_dir), datasets=["my_shapes"]))
    assert loaded.examples[1][0]["images"] == [str((dataset_dir / "shapes_data" / "2.png").resolve())]
    # the same pictures again are fine; other bytes under a taken name are refused, nothing written
    again = _zip(tmp_path / "again.zip", {"d.json": _records("shapes_data/1.png"), "shapes_data/1.png": _png("red")})
    register(dataset_dir, "again", again, proposal.entry)
    clash = _zip(tmp_path / "clash.zip", {"d.json": _records("shapes_data/1.png"), "shapes_data/1.png": _png("blue")})
    with pytest.raises(DataError, match=r"shapes_data/1.png already exists with other contents"):
        register(dataset_dir, "clash", clash, proposal.entry)
    assert not (dataset_dir / "clash.json").exists() and "clash" not in load_registry(dataset_dir)


@pytest.mark.parametrize(
    "members, links, message",
    [
        ({"d.json": _records("../evil.png"), "../evil.png": _png()}, (), "'../evil.png' is not a plain path"),
        ({"d.json": _records("/tmp/evil.png"), "/tmp/evil.png": _png()}, (), "'/tmp/evil.png' is not a plain path"),
        ({"d.json": _records("a\\b.png"), "a\\b.png": _png()}, (), "is not a plain path"),
        ({"d.json": _records("pics/1.png")}, ("pics/1.png",), "'pics/1.png' is not a plain path"),
        ({"d.json": _records("1.png"), "e.json": "[]", "1.png": _png()}, (), "exactly one data file"),
        ({"1.png": _png()}, (), "exactly one data file"),
        ({"d.json": _records("../../etc/passwd")}, (), r"picture '../../etc/passwd' must be a path inside the dataset"),
        ({"d.json": _records("/etc/passwd")}, (), r"picture '/etc/passwd' must be a path inside the dataset"),
        ({"d.json": _records("missing.png")}, (), r"d.json example 1: picture 'missing.png' not found"),
        ({"d.json": _records("1.png"), "1.png": b"not a picture"}, (), "cannot be read as a picture"),
    ],
)
def test_an_unsafe_or_wrong_archive_is_refused_and_leaves_nothing(tmp_path, dataset_dir, members, links, message):
    archive = _zip(tmp_path / "set.zip", members, links)
    entry = {"formatting": "openai", "columns": {"messages": "messages", "images": "images"}}
    with pytest.raises(DataError, match=message):
        register(dataset_dir, "set", archive, entry)
    assert _untouched(dataset_dir)


def test_a_zip_bomb_and_a_lying_archive_are_refused(tmp_path, dataset_dir):
    bomb = _zip(tmp_path / "bomb.zip", {"d.json": _records("1.png"), "1.png": b"\0" * (64 * 2**20)})
    with pytest.raises(DataError, match="'1.png' unpacks to far more than it packs"):
        open_image_set(bomb, "bomb.zip")
    liar = tmp_path / "liar.zip"  # a member that declares fewer bytes than it holds
    _zip(liar, {"d.json": _records("1.png"), "1.png": _png()})
    data = bytearray(liar.read_bytes())
    with zipfile.ZipFile(liar) as archive:
        info = archive.getinfo("1.png")
    entry = {"formatting": "openai", "columns": {"messages": "messages", "images": "images"}}
    for offset in _size_fields(data, info):
        data[offset : offset + 4] = (10).to_bytes(4, "little")
    liar.write_bytes(bytes(data))
    with pytest.raises(DataError, match="cannot be read as a zip archive .*Bad CRC"):
        register(dataset_dir, "liar", liar, entry)
    assert _untouched(dataset_dir)
    with pytest.raises(DataError, match="cannot be read as a zip archive"):
        detect(_write(tmp_path / "fake.zip", b"PK not really"))


def test_a_member_named_twice_is_refused(tmp_path, dataset_dir):
    archive = tmp_path / "twice.zip"
    with zipfile.ZipFile(archive, "w") as packed, pytest.warns(UserWarning, match="Duplicate name"):
        packed.writestr("d.json", _records("1.png"))
        packed.writestr("1.png", _png("red"))
        packed.writestr("1.png", _png("blue"))
    with pytest.raises(DataError, match="'1.png' is in the archive twice"):
        detect(archive)


def test_a_broken_data_file_in_an_archive_is_named_as_the_archive_names_it(tmp_path):
    archive = _zip(tmp_path / "set.zip", {"shapes/d.json": '[{"messages": 1},', "shapes/1.png": _png()})
    with pytest.raises(DataError, match=r"^d\.json line 1 column 18: .*Fix the JSON there") as refused:
        detect(archive)
    assert refused.value.message.args["path"] == "d.json"  # not the temporary folder it was unpacked to


def test_the_registered_examples_name_the_pictures_where_they_now_lie(tmp_path, dataset_dir):
    archive = _zip(
        tmp_path / "s.zip",
        {"d.json": _records("pics/1.png", "pics/2.png"), "pics/1.png": _png(), "pics/2.png": _png("blue")},
    )
    entry = {"formatting": "openai", "columns": {"messages": "messages", "images": "images"}}
    registered = register(dataset_dir, "set", archive, entry)
    [loaded] = load_conversations(DataConfig(dataset_dir=str(dataset_dir), datasets=["set"]))
    assert registered.examples.examples == loaded.examples
    assert registered.examples.examples[1][0]["images"] == [str((dataset_dir / "pics" / "2.png").resolve())]


def _size_fields(data: bytearray, info: zipfile.ZipInfo) -> list[int]:
    """Where the uncompressed size of `info` is written: its local header and its central directory entry."""
    local = info.header_offset + 22
    central = bytes(data).find(b"PK\x01\x02", bytes(data).find(b"PK\x01\x02") + 1) + 24  # the second entry's
    return [local, central]


def _write(path, data: bytes):
    path.write_bytes(data)
    return path
