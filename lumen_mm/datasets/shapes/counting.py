"""Lumen-Shapes counting: 5-40 small objects of one target class among 0-10
objects of other classes, in COCO instances format for mmdet's
``CocoDataset``; each image entry also holds ``count_category_id`` and
``count``.

Counting objects never touch (``CountConfig.gap`` free pixels between their
boxes), so none is hidden and their centres are at least 8 px apart.
"""
import functools
import os
import os.path as osp
from dataclasses import dataclass
from typing import List, Tuple

import numpy as np
from PIL import Image
from tqdm import tqdm

from .objects import (_ANN_ID_STRIDE, _COLOR_NAMES, SHAPE_CLASSES, SPLITS,
                      ShapeObject, ShapesConfig, _background, _coco,
                      _image_id, _paint, draw_shape_mask)

_COUNT_STREAM = 2  # see the determinism note in lumen_mm.datasets.shapes
_COUNT_PART = 4  # image ids start at part * 10**6


@dataclass(frozen=True)
class CountConfig:
    """What one counting image may contain."""
    min_count: int = 5
    max_count: int = 40
    max_distractors: int = 10
    min_size: int = 6
    max_size: int = 14
    gap: int = 2  # free px between two objects' boxes
    max_tries: int = 100  # places tried per object

    def __post_init__(self):
        if not 1 <= self.min_count <= self.max_count:
            raise ValueError('need 1 <= min_count <= max_count, got '
                             f'{self.min_count}, {self.max_count}')
        if self.max_count + self.max_distractors >= _ANN_ID_STRIDE:
            raise ValueError('need max_count + max_distractors < '
                             f'{_ANN_ID_STRIDE} (ann ids per image)')
        if not 1 <= self.min_size <= self.max_size:
            raise ValueError('need 1 <= min_size <= max_size, got '
                             f'{self.min_size}, {self.max_size}')


@dataclass
class CountSample:
    """One counting image: the target objects first, then distractors."""
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: List[ShapeObject]
    target: str  # the class to count

    @property
    def count(self) -> int:
        return sum(o.shape == self.target for o in self.objects)


@functools.lru_cache(maxsize=None)
def _small_shape(shape: str,
                 side: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read-only ``side`` x ``side`` mask of ``shape`` and its pixels' ys,
    xs; drawn once per size, as counting images hold many."""
    mask = draw_shape_mask(shape, 0, 0, side, side)
    mask.flags.writeable = False
    return (mask, *np.nonzero(mask))


def generate_count_sample(
        rng: np.random.Generator,
        cfg: CountConfig = CountConfig(),
        shapes_cfg: ShapesConfig = ShapesConfig()) -> CountSample:
    """Draw one counting image; ``shapes_cfg`` gives its size and style.

    Each object tries ``max_tries`` random places ``gap`` px clear of the
    others and is left out when none is free, so crowded images may hold
    fewer objects than drawn.
    """
    size = shapes_cfg.image_size
    canvas = _background(rng, size)
    target = int(rng.integers(len(SHAPE_CLASSES)))
    others = [c for c in range(len(SHAPE_CLASSES)) if c != target]
    num_targets = rng.integers(cfg.min_count, cfg.max_count + 1)
    kinds = [target] * num_targets + [
        others[k] for k in rng.integers(
            len(others), size=rng.integers(0, cfg.max_distractors + 1))
    ]
    # Pixels within ``gap`` of a placed object's box.
    occupied = np.zeros((size, size), dtype=bool)
    objects, layers = [], []
    for kind in kinds:
        for _ in range(cfg.max_tries):
            side = int(rng.integers(cfg.min_size, cfg.max_size + 1))
            x0, y0 = rng.integers(0, size - side + 1, size=2).tolist()
            if not occupied[y0:y0 + side, x0:x0 + side].any():
                break
        else:
            continue
        occupied[max(0, y0 - cfg.gap):y0 + side + cfg.gap,
                 max(0, x0 - cfg.gap):x0 + side + cfg.gap] = True
        shape = SHAPE_CLASSES[kind]
        local, ys, xs = _small_shape(shape, side)
        mask = np.zeros((size, size), dtype=bool)
        mask[y0:y0 + side, x0:x0 + side] = local
        color = _COLOR_NAMES[rng.integers(len(_COLOR_NAMES))]
        objects.append(ShapeObject(shape, color, side, mask))
        layers.append(((ys + y0, xs + x0), color))
    return CountSample(_paint(rng, canvas, layers, shapes_cfg.color_jitter),
                       objects, SHAPE_CLASSES[target])


def write_count_split(out_dir: str, split: str, num_images: int, seed: int,
                      shapes_cfg: ShapesConfig, bar: tqdm,
                      cfg: CountConfig = CountConfig()) -> dict:
    """Write ``count_{split}/`` and return its COCO instances dict."""
    img_dir = osp.join(out_dir, f'count_{split}')
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        sample = generate_count_sample(
            np.random.default_rng(
                [seed, SPLITS.index(split), i, _COUNT_STREAM]), cfg,
            shapes_cfg)
        image_id = _image_id(_COUNT_PART, split, i)
        file_name = f'{i:06d}.png'
        Image.fromarray(sample.image).save(osp.join(img_dir, file_name))
        images.append(
            dict(id=image_id, file_name=file_name,
                 height=shapes_cfg.image_size, width=shapes_cfg.image_size,
                 count_category_id=SHAPE_CLASSES.index(sample.target) + 1,
                 count=sample.count))
        anns += [obj.to_coco(image_id * _ANN_ID_STRIDE + k + 1, image_id)
                 for k, obj in enumerate(sample.objects)]
        bar.update()
    return _coco(images, anns)
