"""The bundled picture demo: small drawings of coloured shapes, with questions and answers in Chinese about how
many of a kind each shows, in LLaMA-Factory's multimodal layout (its mllm_demo: sharegpt messages with `<image>`
placeholders, an `images` list of paths relative to the dataset folder). Over the same pictures, a preference set
(dpo: the right count chosen, a wrong one rejected; ranking data as LLaMA-Factory's rlhf_v) and a feedback set (kto:
one answer each, marked right or wrong in a `label` column, as its kto_en_demo).

    .venv/bin/python -m studio.dev.vl_demo     # rewrites data/shapes_zh_*demo.json, data/shapes_zh_demo/, entries

Everything follows from one seed, so the files are the same on every run (the preference and feedback sets draw
from a second random stream, so the first set stays as it was made before them). Pictures are 112 x 112 pixels: 16
image tokens for Qwen2-VL (and for the tiny test model), a few hundred bytes of PNG each.
"""

from __future__ import annotations

import argparse
import json
import random
from dataclasses import dataclass
from pathlib import Path

from studio.paths import BUNDLED_DATA_DIR

NAME = "shapes_zh_demo"
PAIRS_NAME = "shapes_zh_dpo_demo"
FEEDBACK_NAME = "shapes_zh_kto_demo"
PICTURES = 40
SIZE, CELL = 112, 28  # a 4 x 4 grid of cells, one shape per cell
COLOURS = {"红色": (220, 40, 40), "绿色": (40, 160, 60), "蓝色": (40, 80, 220), "黄色": (230, 190, 20)}
SHAPES = ("圆", "正方形", "三角形")
TAGS = {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"}
ENTRY = {
    "file_name": f"{NAME}.json",
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "images": "images"},
    "tags": TAGS,
}
PAIRS_ENTRY = {
    "file_name": f"{PAIRS_NAME}.json",
    "ranking": True,
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "chosen": "chosen", "rejected": "rejected", "images": "images"},
    "tags": TAGS,
}
FEEDBACK_ENTRY = {
    "file_name": f"{FEEDBACK_NAME}.json",
    "formatting": "sharegpt",
    "columns": {"messages": "messages", "kto_tag": "label", "images": "images"},
    "tags": TAGS,
}


@dataclass(frozen=True)
class Picture:
    file: str  # relative to the dataset folder
    counts: dict[tuple[str, str], int]  # (colour, shape) -> how many are drawn


def generate(data_dir: Path = BUNDLED_DATA_DIR, seed: int = 0) -> list[dict]:
    """Draw the pictures into data_dir/NAME/, write the three data files and their entries in the folder's
    dataset_info.json (the others kept as they are); returns the records of NAME (see write_preferences)."""
    rng = random.Random(seed)
    folder = data_dir / NAME
    folder.mkdir(parents=True, exist_ok=True)
    pictures = [_draw(rng, folder, index) for index in range(1, PICTURES + 1)]
    records = [_single(rng, picture) for picture in pictures]
    records += [_pair(rng, *rng.sample(pictures, 2)) for _ in range(PICTURES // 8)]
    _write(data_dir / f"{NAME}.json", records)
    pairs, feedback = write_preferences(data_dir, pictures, seed)
    registry_file = data_dir / "dataset_info.json"
    registry = json.loads(registry_file.read_text(encoding="utf-8")) if registry_file.is_file() else {}
    registry |= {NAME: ENTRY, PAIRS_NAME: PAIRS_ENTRY, FEEDBACK_NAME: FEEDBACK_ENTRY}
    _write(registry_file, registry)
    return records


def write_preferences(data_dir: Path, pictures: list[Picture], seed: int) -> tuple[list[dict], list[dict]]:
    """The preference pairs (one per picture, then two-picture comparisons) and feedback records over `pictures`,
    written to data_dir/PAIRS_NAME.json and FEEDBACK_NAME.json; from their own random stream."""
    rng = random.Random(seed + 1)
    pairs = [_preference(rng, picture) for picture in pictures]
    pairs += [_compared_pair(*rng.sample(pictures, 2)) for _ in range(PICTURES // 8)]
    feedback = [_feedback(rng, picture, right=index % 2 == 0) for index, picture in enumerate(pictures)]
    _write(data_dir / f"{PAIRS_NAME}.json", pairs)
    _write(data_dir / f"{FEEDBACK_NAME}.json", feedback)
    return pairs, feedback


def _write(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _draw(rng: random.Random, folder: Path, index: int) -> Picture:
    from PIL import Image, ImageDraw

    kinds = rng.sample([(c, s) for c in COLOURS for s in SHAPES], rng.randint(1, 3))
    counts = {kind: rng.randint(1, 5) if n == 0 else rng.randint(1, 3) for n, kind in enumerate(kinds)}
    cells = rng.sample(range(16), sum(counts.values()))
    image = Image.new("RGB", (SIZE, SIZE), "white")
    draw = ImageDraw.Draw(image)
    placed = iter(cells)
    for (colour, shape), count in counts.items():
        for _ in range(count):
            cell = next(placed)
            x, y = (cell % 4) * CELL + 4, (cell // 4) * CELL + 4
            box = (x, y, x + CELL - 8, y + CELL - 8)
            fill = COLOURS[colour]
            if shape == "圆":
                draw.ellipse(box, fill=fill)
            elif shape == "正方形":
                draw.rectangle(box, fill=fill)
            else:
                draw.polygon([(x + (CELL - 8) // 2, y), (x, y + CELL - 8), (x + CELL - 8, y + CELL - 8)], fill=fill)
    name = f"{NAME}/{index:02d}.png"
    image.save(folder.parent / name, optimize=True)
    return Picture(name, counts)


def _answer(picture: Picture, kind: tuple[str, str]) -> str:
    return _said_count(picture.counts.get(kind, 0), kind)


def _said_count(count: int, kind: tuple[str, str]) -> str:
    colour, shape = kind
    return f"图中有{count}个{colour}的{shape}。" if count else f"图中没有{colour}的{shape}。"


def _single(rng: random.Random, picture: Picture) -> dict:
    """One picture: how many of its main kind, and in every other record a second question (sometimes a kind it
    does not show)."""
    main = next(iter(picture.counts))
    colour, shape = main
    messages = [
        {"role": "user", "content": f"<image>图中有几个{colour}的{shape}？"},
        {"role": "assistant", "content": _answer(picture, main)},
    ]
    if rng.random() < 0.5:
        other = rng.choice([(c, s) for c in COLOURS for s in SHAPES if (c, s) != main])
        messages += [
            {"role": "user", "content": f"那{other[0]}的{other[1]}呢？"},
            {"role": "assistant", "content": _answer(picture, other)},
        ]
    return {"messages": messages, "images": [picture.file]}


def _pair(rng: random.Random, first: Picture, second: Picture) -> dict:
    """Two pictures compared: which shows more of the first one's main kind."""
    kind = next(iter(first.counts))
    answer = _comparison(kind, first.counts.get(kind, 0), second.counts.get(kind, 0))
    return {
        "messages": [{"role": "user", "content": _comparison_question(kind)}, {"role": "assistant", "content": answer}],
        "images": [first.file, second.file],
    }


def _comparison_question(kind: tuple[str, str]) -> str:
    colour, shape = kind
    return f"<image><image>这两张图里，哪张的{colour}的{shape}更多？"


def _comparison(kind: tuple[str, str], a: int, b: int) -> str:
    """The answer when the first picture shows `a` of the kind and the second `b`."""
    colour, shape = kind
    if a == b:
        return f"两张图里的{colour}的{shape}一样多，都是{a}个。"
    which, more = ("第一张", a) if a > b else ("第二张", b)
    return f"{which}图里的{colour}的{shape}更多，有{more}个。"


def _question(kind: tuple[str, str]) -> dict:
    colour, shape = kind
    return {"role": "user", "content": f"<image>图中有几个{colour}的{shape}？"}


def _wrong_count(rng: random.Random, picture: Picture, kind: tuple[str, str]) -> int:
    right = picture.counts.get(kind, 0)
    return rng.choice([count for count in range(6) if count != right])


def _preference(rng: random.Random, picture: Picture) -> dict:
    """One picture's main kind counted: the right count chosen, a wrong one rejected."""
    kind = next(iter(picture.counts))
    return {
        "messages": [_question(kind)],
        "chosen": {"role": "assistant", "content": _answer(picture, kind)},
        "rejected": {"role": "assistant", "content": _said_count(_wrong_count(rng, picture, kind), kind)},
        "images": [picture.file],
    }


def _compared_pair(first: Picture, second: Picture) -> dict:
    """Two pictures compared: the right answer chosen; rejected, the other picture said to show more (or, when they
    show as many, the first said to show one more)."""
    kind = next(iter(first.counts))
    a, b = first.counts.get(kind, 0), second.counts.get(kind, 0)
    return {
        "messages": [{"role": "user", "content": _comparison_question(kind)}],
        "chosen": {"role": "assistant", "content": _comparison(kind, a, b)},
        "rejected": {
            "role": "assistant",
            "content": _comparison(kind, b, a) if a != b else _comparison(kind, a + 1, a),
        },
        "images": [first.file, second.file],
    }


def _feedback(rng: random.Random, picture: Picture, right: bool) -> dict:
    """One picture's main kind counted, rightly (label true) or wrongly (label false)."""
    kind = next(iter(picture.counts))
    count = picture.counts[kind] if right else _wrong_count(rng, picture, kind)
    return {
        "messages": [_question(kind), {"role": "assistant", "content": _said_count(count, kind)}],
        "label": right,
        "images": [picture.file],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=BUNDLED_DATA_DIR)
    args = parser.parse_args()
    records = generate(args.data_dir)
    size = sum(p.stat().st_size for p in (args.data_dir / NAME).iterdir())
    print(f"{len(records)} records, {PICTURES} pictures ({size / 1024:.1f} KiB) in {args.data_dir / NAME}")
    for name in (PAIRS_NAME, FEEDBACK_NAME):
        count = len(json.loads((args.data_dir / f"{name}.json").read_text(encoding="utf-8")))
        print(f"{count} records in {args.data_dir / name}.json, over the same pictures")


if __name__ == "__main__":
    main()
