"""Lumen-Shapes objects: classes and colours, what one image may hold, one
object with its COCO annotation, and the drawing that every part shares
(shape masks, backgrounds, painting with noise, placement that keeps every
object recognisable).

Annotations describe what is visible: ``bbox``, ``area`` and the compressed
RLE ``segmentation`` come from the visible (unoccluded) mask. Each annotation
also stores the object's ``color`` name and drawn ``size`` in pixels.
"""
from dataclasses import dataclass, field
from typing import List, NamedTuple, Sequence, Tuple, Union

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

SHAPE_CLASSES = ('circle', 'square', 'triangle', 'star', 'hexagon', 'cross')
COLORS = {
    'red': (220, 40, 40),
    'green': (40, 170, 60),
    'blue': (40, 80, 220),
    'yellow': (240, 210, 40),
    'purple': (150, 60, 190),
    'orange': (245, 140, 30),
}
_COLOR_NAMES = tuple(COLORS)
SPLITS = ('train', 'val')

# Images per split (ids stay unique across splits) and objects per image
# (ann ids stay unique across images).
_SPLIT_ID_STRIDE = 10**6
_ANN_ID_STRIDE = 100


@dataclass(frozen=True)
class ShapesConfig:
    """What one image may contain."""
    image_size: int = 128
    min_objects: int = 1
    max_objects: int = 6
    min_size: int = 10
    max_size: int = 50
    # An earlier object must keep this fraction of its pixels visible.
    min_visible: float = 0.5
    # Placements tried per object before the image is considered full.
    max_tries: int = 20
    color_jitter: int = 15
    refs_per_image: int = 3
    max_sentences: int = 2

    def __post_init__(self):
        if not 1 <= self.min_objects <= self.max_objects < _ANN_ID_STRIDE:
            raise ValueError('need 1 <= min_objects <= max_objects < '
                             f'{_ANN_ID_STRIDE}, got {self.min_objects}, '
                             f'{self.max_objects}')
        if not 0 < self.min_visible <= 1:
            raise ValueError(
                f'min_visible must be in (0, 1], got {self.min_visible}')
        if not 1 <= self.max_sentences < 10:  # sent_id = ref_id * 10 + j
            raise ValueError(
                f'max_sentences must be in [1, 10), got {self.max_sentences}')
        if not 1 <= self.min_size <= self.max_size <= self.image_size:
            raise ValueError('need 1 <= min_size <= max_size <= image_size, '
                             f'got {self.min_size}, {self.max_size}, '
                             f'{self.image_size}')


@dataclass(eq=False)
class ShapeObject:
    """One shape in an image; its geometry is that of its visible mask.

    Later tasks (keypoints, counting, QA) extend this record.
    """
    shape: str
    color: str
    size: int  # side of the square the shape was drawn in, px
    mask: np.ndarray  # (H, W) bool, the visible pixels
    bbox: Tuple[int, int, int, int] = field(init=False)  # x, y, w, h
    area: int = field(init=False)
    center: Tuple[float, float] = field(init=False)  # of the visible box

    def __post_init__(self):
        # flatnonzero: ~10x faster than nonzero on 2-D masks (numpy 2)
        ys, xs = np.divmod(np.flatnonzero(self.mask), self.mask.shape[1])
        x, y = int(xs.min()), int(ys.min())
        w, h = int(xs.max()) - x + 1, int(ys.max()) - y + 1
        self.bbox = (x, y, w, h)
        self.area = len(xs)
        self.center = (x + w / 2, y + h / 2)

    @property
    def category_id(self) -> int:
        return SHAPE_CLASSES.index(self.shape) + 1

    def to_coco(self, ann_id: int, image_id: int) -> dict:
        """COCO annotation of the visible mask, plus ``color`` and ``size``."""
        rle = mask_utils.encode(np.asfortranarray(self.mask, dtype=np.uint8))
        rle['counts'] = rle['counts'].decode('ascii')
        return dict(
            id=ann_id,
            image_id=image_id,
            category_id=self.category_id,
            bbox=list(self.bbox),
            area=self.area,
            segmentation=rle,
            iscrowd=0,
            color=self.color,
            size=self.size)

    @classmethod
    def from_coco(cls, ann: dict) -> 'ShapeObject':
        """Rebuild an object from the annotation that ``to_coco`` wrote."""
        mask = mask_utils.decode(ann['segmentation']).astype(bool)
        return cls(SHAPE_CLASSES[ann['category_id'] - 1], ann['color'],
                   ann['size'], mask)


def shapes_metainfo() -> dict:
    """``metainfo`` for mmdet datasets and visualisers."""
    return dict(classes=SHAPE_CLASSES, palette=list(COLORS.values()))


def _image_id(part: int, split: str, index: int) -> int:
    """Image id of image ``index`` of ``split`` in a part (0: shapes, 2:
    pose, 4: counting), unique across all the dataset's files."""
    return (part + SPLITS.index(split)) * _SPLIT_ID_STRIDE + index + 1


def _categories() -> List[dict]:
    return [dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(SHAPE_CLASSES)]


def _coco(images: List[dict], annotations: List[dict]) -> dict:
    return dict(
        info=dict(description='Lumen-Shapes', version='1.0'),
        images=images,
        annotations=annotations,
        categories=_categories())


# --------------------------------------------------------------------------
# Drawing
# --------------------------------------------------------------------------


def _star(points: int = 5, inner: float = 0.4) -> np.ndarray:
    angles = -np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 0.5, 0.5 * inner)
    return np.stack([0.5 + radii * np.cos(angles),
                     0.5 + radii * np.sin(angles)], 1)


def _hexagon() -> np.ndarray:
    angles = np.arange(6) * np.pi / 3
    return np.stack([0.5 + 0.5 * np.cos(angles),
                     0.5 + 0.5 * np.sin(angles)], 1)


# Outlines in the unit square, y down; the circle is drawn as an ellipse.
_UNIT_POLYGONS = {
    'square': np.array([[0, 0], [1, 0], [1, 1], [0, 1]], dtype=float),
    'triangle': np.array([[0.5, 0], [1, 1], [0, 1]], dtype=float),
    'star': _star(),
    'hexagon': _hexagon(),
    'cross': np.array([[1, 0], [2, 0], [2, 1], [3, 1], [3, 2], [2, 2], [2, 3],
                       [1, 3], [1, 2], [0, 2], [0, 1], [1, 1]]) / 3,
}


def draw_shape_mask(shape: str, x0: int, y0: int, size: int,
                    image_size: int) -> np.ndarray:
    """(H, W) bool mask of ``shape`` drawn in the box of side ``size`` at
    (x0, y0)."""
    canvas = Image.new('L', (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    if shape == 'circle':
        draw.ellipse([x0, y0, x0 + size - 1, y0 + size - 1], fill=1)
    else:
        points = _UNIT_POLYGONS[shape] * (size - 1) + (x0, y0)
        draw.polygon([tuple(p) for p in points.tolist()], fill=1)
    return np.asarray(canvas, dtype=bool)


def _dull_color(rng: np.random.Generator) -> np.ndarray:
    """A grey-ish colour, so that the saturated shapes stand out."""
    return rng.uniform(60, 190) + rng.uniform(-25, 25, size=3)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """(H, W, 3) float background: a linear gradient, stripes or a checker."""
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    first = _dull_color(rng)
    kind = rng.integers(3)
    if kind == 0:  # linear gradient between two dull colours
        second = _dull_color(rng)
        angle = rng.uniform(0, 2 * np.pi)
        t = xs * np.cos(angle) + ys * np.sin(angle)
        t = (t - t.min()) / (t.max() - t.min())
    else:  # low-contrast stripes or checker
        second = first + rng.uniform(-40, 40, size=3)
        if kind == 1:
            angle = rng.uniform(0, np.pi)
            half_period = rng.integers(3, 13)
            t = (xs * np.cos(angle) + ys * np.sin(angle)) // half_period % 2
        else:
            cell = rng.integers(8, 33)
            t = (xs // cell + ys // cell) % 2
    return first + t[..., None] * (second - first)


# Pixels of a canvas: an (H, W) bool mask or (ys, xs) index arrays.
Pixels = Union[np.ndarray, Tuple[np.ndarray, np.ndarray]]


def _paint(rng: np.random.Generator, canvas: np.ndarray,
           layers: Sequence[Tuple[Pixels, str]],
           color_jitter: int) -> np.ndarray:
    """Fill each (pixels, colour name) in order, later on top, with a
    jittered colour; add Gaussian pixel noise; return uint8 RGB.

    (ys, xs) arrays are much faster than a mask for small objects.
    """
    for pixels, color in layers:
        jitter = rng.integers(-color_jitter, color_jitter + 1, 3)
        canvas[pixels] = np.array(COLORS[color]) + jitter
    canvas += rng.normal(0, rng.uniform(2, 8), size=canvas.shape)
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)


class _Placement(NamedTuple):
    shape: str
    color: str
    size: int
    x0: int
    y0: int
    mask: np.ndarray  # (H, W) bool, the whole shape

    def near(self, other: '_Placement') -> bool:
        """Whether the drawing boxes overlap or touch."""
        return (self.x0 <= other.x0 + other.size
                and other.x0 <= self.x0 + self.size
                and self.y0 <= other.y0 + other.size
                and other.y0 <= self.y0 + self.size)


def _place_objects(rng: np.random.Generator,
                   cfg: ShapesConfig) -> List[_Placement]:
    """Random placements, in drawing order.

    A placement is rejected when it would hide more than ``1 - min_visible``
    of an earlier object, or touch one of the same colour (the two would
    merge into one blob), so every object stays recognisable.
    """
    placed, visible = [], []
    for _ in range(rng.integers(cfg.min_objects, cfg.max_objects + 1)):
        for _ in range(cfg.max_tries):
            shape = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
            color = _COLOR_NAMES[rng.integers(len(_COLOR_NAMES))]
            size = int(rng.integers(cfg.min_size, cfg.max_size + 1))
            x0, y0 = rng.integers(0, cfg.image_size - size + 1, size=2)
            new = _Placement(shape, color, size, int(x0), int(y0),
                             draw_shape_mask(shape, int(x0), int(y0), size,
                                             cfg.image_size))
            if any(p.color == color and p.near(new) for p in placed):
                continue
            kept = [vis & ~new.mask for vis in visible]
            if all(k.sum() >= cfg.min_visible * p.mask.sum()
                   for k, p in zip(kept, placed)):
                placed.append(new)
                visible = kept + [new.mask]
                break
        else:
            break  # no room left
    return placed
