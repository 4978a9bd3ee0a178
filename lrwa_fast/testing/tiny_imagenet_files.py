"""A synthetic Tiny-ImageNet in the exact extracted layout (real JPEG files of random pixels), for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.tiny_imagenet import ANNOTATIONS, FOLDER, IMAGE_SIZE, NUM_CLASSES, WNIDS, pillow


def write_tiny_imagenet(root: str | Path, classes: int = 3, per_class: int = 4, val: int = 6, seed: int = 0) -> Path:
    """Write ``root/tiny-imagenet-200/`` with ``classes`` classes and return that folder.

    As in ``tiny-imagenet-200.zip``: ``wnids.txt`` (random WordNet ids, not in sorted order), ``words.txt`` (one
    more id than the classes, as the real one lists many), ``train/<wnid>/images/<wnid>_<k>.JPEG`` (``per_class``
    each) with ``train/<wnid>/<wnid>_boxes.txt``, ``val/images/val_<k>.JPEG`` (``val``, random classes) with
    ``val/val_annotations.txt`` (tab-separated: file, wnid, 4 box coordinates) and ``test/images/`` (two
    unlabelled images). Images are 64×64 JPEGs of random pixels; the first training image of the first class in
    ``wnids.txt`` is greyscale (mode ``L``), as some of the real ones are.
    """
    image = pillow()
    if not 0 < classes <= NUM_CLASSES or per_class < 1 or val < 1:
        raise ValueError(f"need 1 to {NUM_CLASSES} classes and at least one image each and in val, got "
                         f"classes={classes}, per_class={per_class}, val={val}")
    rng = np.random.default_rng(seed)
    base = Path(root) / FOLDER
    wnids = [f"n{n:08d}" for n in rng.choice(10**8, classes, replace=False)]
    if classes > 1 and wnids == sorted(wnids):
        wnids.reverse()  # the real wnids.txt is not sorted: class indices come from the sorted ids

    def jpeg(path: Path, grey: bool = False) -> str:
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (IMAGE_SIZE, IMAGE_SIZE) if grey else (IMAGE_SIZE, IMAGE_SIZE, 3),
                              dtype=np.uint8)
        image.fromarray(pixels).save(path, format="JPEG")  # 2-D: greyscale (L), 3-D: RGB
        return path.name

    def box() -> str:
        x0, y0 = rng.integers(0, IMAGE_SIZE // 2, 2)
        x1, y1 = rng.integers(IMAGE_SIZE // 2, IMAGE_SIZE, 2)
        return f"{x0}\t{y0}\t{x1}\t{y1}"

    base.mkdir(parents=True, exist_ok=True)
    (base / WNIDS).write_text("".join(f"{w}\n" for w in wnids), encoding="utf-8")
    (base / "words.txt").write_text("".join(f"{w}\tsynthetic class {w}\n" for w in [*wnids, "n99999999"]),
                                    encoding="utf-8")
    for c, wnid in enumerate(wnids):
        names = [jpeg(base / "train" / wnid / "images" / f"{wnid}_{k}.JPEG", grey=c == 0 and k == 0)
                 for k in range(per_class)]
        (base / "train" / wnid / f"{wnid}_boxes.txt").write_text("".join(f"{n}\t{box()}\n" for n in names),
                                                                 encoding="utf-8")
    lines = [f"{jpeg(base / 'val' / 'images' / f'val_{k}.JPEG')}\t{wnids[rng.integers(classes)]}\t{box()}\n"
             for k in range(val)]
    (base / "val" / ANNOTATIONS).write_text("".join(lines), encoding="utf-8")
    for k in range(2):
        jpeg(base / "test" / "images" / f"test_{k}.JPEG")
    return base
