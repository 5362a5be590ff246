"""Lumen-Shapes: a small synthetic dataset for detection, segmentation and
referring-expression grounding.

Every image shows 1-6 coloured shapes on a gradient or textured background
with Gaussian pixel noise. The generator writes COCO instances and
refer-API referring expressions, so that mmdet's ``CocoDataset`` and
``RefCocoDataset`` read them unchanged and the whole Lumen pipeline can be
trained and checked in minutes on a CPU.

Layout of ``out_dir``::

    train/000000.png ...
    val/000000.png ...
    annotations/instances_train.json  # file_name relative to train/
    annotations/instances_val.json    # file_name relative to val/
    annotations/instances_refs.json   # both splits, relative to out_dir
    annotations/refs_shapes.p         # refs of both splits (refer-API)
    tokenizer/                        # BPE for tiny LMMs (HF format)

plus the pose, counting and VQA parts (``pose_{split}/``, ``count_{split}/``,
``annotations/person_keypoints_{split}.json``, ``count_{split}.json``,
``qa_{split}.json``) described in :mod:`lumen_mm.datasets.shapes_tasks`.

Dataset kwargs (mmdet 3.3)::

    CocoDataset(data_root=out_dir, ann_file='annotations/instances_val.json',
                data_prefix=dict(img='val/'), metainfo=shapes_metainfo())
    RefCocoDataset(data_root=out_dir,
                   ann_file='annotations/instances_refs.json',
                   split_file='annotations/refs_shapes.p', split='val',
                   data_prefix=dict(img_path=''), text_mode='select_first')

``RefCocoDataset`` loads the whole pickle, keeps the refs whose ``split``
matches, and looks their ``ann_id`` and ``image_id`` up in one ``ann_file``;
that file therefore holds the images of both splits, with file names under
one ``data_prefix``. Its instances carry only ``mask`` (the RLE) and its
``text`` is the lower-cased ``raw`` sentence.

Annotations describe what is visible: ``bbox``, ``area`` and the compressed
RLE ``segmentation`` come from the visible (unoccluded) mask. Each annotation
also stores the object's ``color`` name and drawn ``size`` in pixels.

Everything is a function of the seed: image ``i`` of split ``s`` draws from
``numpy.random.default_rng([seed, s, i])``, so changing the size of one split
leaves the other untouched. Ids are stable as well: ``image_id = s * 10**6 +
i + 1``, ``ann_id = image_id * 100 + k`` for the k-th object (1-based) and a
ref has the id of the annotation it refers to.
"""
import json
import os
import os.path as osp
import pickle
from collections import Counter
from dataclasses import dataclass, field
from typing import (Callable, Dict, List, NamedTuple, Optional, Sequence,
                    Tuple, Union)

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from tqdm import tqdm

from .tokenizer import train_tokenizer
from .vqa import strip_image_mark

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

# An expression must hold with this margin and fail for every other object
# even when the margin is given away, so near-ties are never used.
SPATIAL_MARGIN = 4.0  # px between visible-box centres
SIZE_RATIO = 1.25  # between drawn sizes


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


@dataclass
class ShapesSample:
    """One generated image with its objects (in drawing order) and refs."""
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: List[ShapeObject]
    # (index into objects, sentences); distinct objects.
    refs: List[Tuple[int, List[str]]]


def shapes_metainfo() -> dict:
    """``metainfo`` for mmdet datasets and visualisers."""
    return dict(classes=SHAPE_CLASSES, palette=list(COLORS.values()))


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


def generate_sample(rng: np.random.Generator,
                    cfg: ShapesConfig = ShapesConfig()) -> ShapesSample:
    """Draw one image, its objects and its referring expressions."""
    canvas = _background(rng, cfg.image_size)
    placed = _place_objects(rng, cfg)
    objects = []
    hidden = np.zeros((cfg.image_size, cfg.image_size), dtype=bool)
    for p in reversed(placed):
        objects.append(ShapeObject(p.shape, p.color, p.size, p.mask & ~hidden))
        hidden |= p.mask
    objects.reverse()
    image = _paint(rng, canvas, [(p.mask, p.color) for p in placed],
                   cfg.color_jitter)
    return ShapesSample(image, objects, _sample_refs(rng, objects, cfg))


# --------------------------------------------------------------------------
# Referring expressions
# --------------------------------------------------------------------------

# (object, all objects, strict) -> does the expression describe the object?
Predicate = Callable[[ShapeObject, Sequence[ShapeObject], bool], bool]
Matcher = Callable[[ShapeObject], bool]

# Larger is further towards the side.
_SIDES: Dict[str, Callable[[ShapeObject], float]] = {
    'left': lambda o: -o.center[0],
    'right': lambda o: o.center[0],
    'top': lambda o: -o.center[1],
    'bottom': lambda o: o.center[1],
}
_RELATIONS = {
    'left': 'to the left of',
    'right': 'to the right of',
    'top': 'above',
    'bottom': 'below',
}
# How often each template is sampled (when it has a unique expression):
# prefer those that need position or size on top of colour and class, so
# that grounding is not solved by naming a class.
_TEMPLATE_WEIGHTS = {'name': 1.0, 'size': 1.5, 'extreme': 2.0,
                     'relation': 2.0}


@dataclass(frozen=True)
class Expression:
    """A sentence and the predicate that says which objects it describes.

    The text alone determines the predicate, so an expression can be
    re-evaluated from annotations (see :func:`candidate_expressions`).
    """
    text: str
    template: str
    predicate: Predicate

    def select(self, objects: Sequence[ShapeObject],
               strict: bool = True) -> List[int]:
        """Indices of the objects the expression describes."""
        return [i for i, o in enumerate(objects)
                if self.predicate(o, objects, strict)]

    def referent(self, objects: Sequence[ShapeObject]) -> Optional[int]:
        """Index of the one object described, or None when ambiguous.

        One object must pass with the margins, and no other without them.
        """
        strict = self.select(objects, strict=True)
        if len(strict) == 1 and self.select(objects, strict=False) == strict:
            return strict[0]
        return None


def _margin(strict: bool) -> float:
    return SPATIAL_MARGIN if strict else -SPATIAL_MARGIN


def _ratio(strict: bool) -> float:
    return SIZE_RATIO if strict else 1 / SIZE_RATIO


def _nouns(obj: ShapeObject) -> List[Tuple[str, Matcher]]:
    """Ways to name the kind of ``obj``: class, colour, or both."""
    shape, color = obj.shape, obj.color
    return [
        (shape, lambda o: o.shape == shape),
        (f'{color} shape', lambda o: o.color == color),
        (f'{color} {shape}', lambda o: o.shape == shape and o.color == color),
    ]


def _is(match: Matcher) -> Predicate:
    return lambda o, objects, strict: match(o)


def _extreme(match: Matcher, side: str) -> Predicate:
    """Furthest towards ``side`` among at least two matching objects."""
    score = _SIDES[side]

    def predicate(o, objects, strict):
        others = [p for p in objects if p is not o and match(p)]
        return (match(o) and len(others) > 0 and all(
            score(o) - score(p) > _margin(strict) for p in others))

    return predicate


def _compare_pair(match: Matcher, bigger: bool) -> Predicate:
    """The bigger / smaller of exactly two matching objects."""

    def predicate(o, objects, strict):
        others = [p for p in objects if p is not o and match(p)]
        if not match(o) or len(others) != 1:
            return False
        big, small = (o, others[0]) if bigger else (others[0], o)
        return big.size > small.size * _ratio(strict)

    return predicate


def _compare_all(bigger: bool) -> Predicate:
    """The largest / smallest of at least two objects."""

    def predicate(o, objects, strict):
        others = [p for p in objects if p is not o]
        pairs = [(o, p) if bigger else (p, o) for p in others]
        return len(others) > 0 and all(
            big.size > small.size * _ratio(strict) for big, small in pairs)

    return predicate


def _relation(match: Matcher, anchor: Matcher, side: str) -> Predicate:
    """A matching object towards ``side`` of the one anchor object."""
    score = _SIDES[side]

    def predicate(o, objects, strict):
        anchors = [p for p in objects if anchor(p)]
        return (match(o) and len(anchors) == 1 and anchors[0] is not o
                and score(o) - score(anchors[0]) > _margin(strict))

    return predicate


def _describe(target: ShapeObject,
              objects: Sequence[ShapeObject]) -> List[Expression]:
    """Expressions that may describe ``target``; not all are unique."""
    nouns = _nouns(target)
    exprs = [Expression(f'the {noun}', 'name', _is(match))
             for noun, match in nouns]
    for noun, match in nouns + [('object', lambda o: True)]:
        exprs += [
            Expression(f'the {side}-most {noun}', 'extreme',
                       _extreme(match, side)) for side in _SIDES
        ]
    shape_noun, shape_match = nouns[0]
    exprs += [
        Expression(f'the bigger {shape_noun}', 'size',
                   _compare_pair(shape_match, bigger=True)),
        Expression(f'the smaller {shape_noun}', 'size',
                   _compare_pair(shape_match, bigger=False)),
        Expression('the largest object', 'size', _compare_all(bigger=True)),
        Expression('the smallest object', 'size', _compare_all(bigger=False)),
    ]
    # Relations to an anchor named by colour and class; only those that hold
    # for the target are built, since there are many.
    for anchor in objects:
        if anchor is target:
            continue
        anchor_noun, anchor_match = _nouns(anchor)[2]
        for side, score in _SIDES.items():
            if score(target) - score(anchor) <= SPATIAL_MARGIN:
                continue
            exprs += [
                Expression(f'the {noun} {_RELATIONS[side]} the {anchor_noun}',
                           'relation', _relation(match, anchor_match, side))
                for noun, match in nouns[:2]
            ]
    return exprs


def candidate_expressions(
        objects: Sequence[ShapeObject]) -> Dict[str, Expression]:
    """All expressions the generator may use for an image, keyed by text."""
    return {
        e.text: e
        for target in objects for e in _describe(target, objects)
    }


def _sample_refs(rng: np.random.Generator, objects: Sequence[ShapeObject],
                 cfg: ShapesConfig) -> List[Tuple[int, List[str]]]:
    """Up to ``refs_per_image`` distinct objects with 1..``max_sentences``
    unique sentences each."""
    refs = []
    for index in rng.permutation(len(objects)).tolist():
        if len(refs) == cfg.refs_per_image:
            break
        unique = {e.text: e for e in _describe(objects[index], objects)
                  if e.referent(objects) == index}
        if not unique:
            continue
        # Templates with many expressions (relations) are not favoured.
        per_template = Counter(e.template for e in unique.values())
        weights = np.array([
            _TEMPLATE_WEIGHTS[e.template] / per_template[e.template]
            for e in unique.values()
        ])
        count = min(len(unique), int(rng.integers(1, cfg.max_sentences + 1)))
        chosen = rng.choice(len(unique), size=count, replace=False,
                            p=weights / weights.sum())
        texts = list(unique)
        refs.append((index, [texts[i] for i in chosen.tolist()]))
    return refs


# --------------------------------------------------------------------------
# Writing the dataset
# --------------------------------------------------------------------------


def _categories() -> List[dict]:
    return [dict(id=i + 1, name=name, supercategory='shape')
            for i, name in enumerate(SHAPE_CLASSES)]


def _coco(images: List[dict], annotations: List[dict]) -> dict:
    return dict(
        info=dict(description='Lumen-Shapes', version='1.0'),
        images=images,
        annotations=annotations,
        categories=_categories())


def _ref(split: str, file_name: str, image_id: int, ann: dict,
         sentences: List[str]) -> dict:
    """One ref in the refer-API format that ``RefCocoDataset`` reads."""
    ref_id = ann['id']
    sents = [dict(sent=s, raw=s, tokens=s.split(), sent_id=ref_id * 10 + j)
             for j, s in enumerate(sentences)]
    return dict(
        ref_id=ref_id,
        ann_id=ann['id'],
        image_id=image_id,
        split=split,
        sentences=sents,
        sent_ids=[s['sent_id'] for s in sents],
        category_id=ann['category_id'],
        file_name=file_name)


def _dump_json(obj: Union[dict, list], path: str) -> None:
    # Same bytes as json.dump, which runs the slow pure-Python encoder.
    with open(path, 'w') as f:
        f.write(json.dumps(obj))


def _write_split(out_dir: str, split: str, num_images: int, seed: int,
                 cfg: ShapesConfig, bar: tqdm
                 ) -> Tuple[List[dict], List[dict], List[dict]]:
    """Write the images of one split; return its COCO images, annotations
    and refs."""
    split_index = SPLITS.index(split)
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    images, anns, refs = [], [], []
    for i in range(num_images):
        sample = generate_sample(
            np.random.default_rng([seed, split_index, i]), cfg)
        image_id = split_index * _SPLIT_ID_STRIDE + i + 1
        file_name = f'{i:06d}.png'
        Image.fromarray(sample.image).save(osp.join(out_dir, split, file_name))
        images.append(dict(id=image_id, file_name=file_name,
                           height=cfg.image_size, width=cfg.image_size))
        image_anns = [
            obj.to_coco(image_id * _ANN_ID_STRIDE + k + 1, image_id)
            for k, obj in enumerate(sample.objects)
        ]
        anns += image_anns
        refs += [
            _ref(split, f'{split}/{file_name}', image_id, image_anns[index],
                 sentences) for index, sentences in sample.refs
        ]
        bar.update()
    return images, anns, refs


def make_shapes(out_dir: str,
                seed: int = 0,
                num_train: int = 2000,
                num_val: int = 200,
                cfg: ShapesConfig = ShapesConfig(),
                progress: bool = True,
                num_pose_train: int = 1000,
                num_pose_val: int = 100,
                num_count_train: int = 1000,
                num_count_val: int = 100) -> Dict[str, Dict[str, int]]:
    """Generate Lumen-Shapes into ``out_dir`` (layout in the module doc),
    with the pose, counting and VQA parts of
    :mod:`lumen_mm.datasets.shapes_tasks`.

    Returns per split the number of images, objects, refs, sentences,
    questions, pose images, people, counting images and counted objects.
    """
    # shapes_tasks draws with this module's helpers, so it is imported here.
    from .shapes_tasks import (KEYPOINT_NAMES, write_count_split,
                               write_pose_split, write_questions)
    split_sizes = dict(train=num_train, val=num_val)
    pose_sizes = dict(train=num_pose_train, val=num_pose_val)
    count_sizes = dict(train=num_count_train, val=num_count_val)
    for name, sizes in (('', split_sizes), ('pose ', pose_sizes),
                        ('count ', count_sizes)):
        if not all(0 <= n < _SPLIT_ID_STRIDE for n in sizes.values()):
            raise ValueError(f'{name}split sizes must be in [0, '
                             f'{_SPLIT_ID_STRIDE}), got {sizes}')
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)

    stats = {}
    all_images, all_anns, all_refs, train_questions = [], [], [], []
    total = sum(sum(s.values()) for s in (split_sizes, pose_sizes,
                                          count_sizes))
    with tqdm(total=total, desc='Lumen-Shapes', disable=not progress) as bar:
        for split in SPLITS:
            images, anns, refs = _write_split(out_dir, split,
                                              split_sizes[split], seed, cfg,
                                              bar)
            coco = _coco(images, anns)
            _dump_json(coco, osp.join(ann_dir, f'instances_{split}.json'))
            questions = write_questions(split, coco, seed)
            _dump_json(questions, osp.join(ann_dir, f'qa_{split}.json'))
            if split == 'train':
                train_questions = questions
            all_images += [dict(img, file_name=f'{split}/{img["file_name"]}')
                           for img in images]
            all_anns += anns
            all_refs += refs
            stats[split] = dict(
                images=len(images),
                objects=len(anns),
                refs=len(refs),
                sentences=sum(len(ref['sentences']) for ref in refs),
                questions=len(questions))
        for split in SPLITS:
            pose = write_pose_split(out_dir, split, pose_sizes[split], seed,
                                    cfg, bar)
            _dump_json(pose,
                       osp.join(ann_dir, f'person_keypoints_{split}.json'))
            count = write_count_split(out_dir, split, count_sizes[split],
                                      seed, cfg, bar)
            _dump_json(count, osp.join(ann_dir, f'count_{split}.json'))
            stats[split].update({
                'pose images': len(pose['images']),
                'people': len(pose['annotations']),
                'count images': len(count['images']),
                'counted objects': sum(
                    img['count'] for img in count['images'])
            })
    _dump_json(_coco(all_images, all_anns),
               osp.join(ann_dir, 'instances_refs.json'))
    with open(osp.join(ann_dir, 'refs_shapes.p'), 'wb') as f:
        pickle.dump(all_refs, f, protocol=4)
    # Tiny models have no pretrained tokenizer: train one on every text the
    # prompts hold. Without the keypoint names and the questions, " left
    # hand" was split into ' left', ' ', 'ha', 'n', 'd'. The names get the
    # leading space they have after "location of" in the prompts.
    texts = [' '.join(SHAPE_CLASSES), ' '.join(COLORS),
             ''.join(' ' + name.replace('_', ' ') for name in KEYPOINT_NAMES)]
    texts += [s['raw'] for ref in all_refs for s in ref['sentences']]
    texts += [strip_image_mark(turn['value'])
              for entry in train_questions
              for turn in entry['conversations']]
    train_tokenizer(texts, osp.join(out_dir, 'tokenizer'))
    return stats
