"""Lumen-Shapes pose: 1-3 stick figures ("person") per image, plus 0-3
distractor shapes, in COCO keypoint format for mmpose's ``CocoDataset``
(dataset info: ``configs/lumen/_base_/datasets/lumen_shapes_pose_info.py``).

Every figure faces the viewer, and ``left``/``right`` are the person's own:
its left hand and foot lie on the image's right of its torso, by at least
10% of its height, so the two sides are never confused. Keypoints are pixel
centres (pixel ``i`` spans ``[i, i + 1)``, as boxes do). ``v=2`` marks a
keypoint that is visible, ``v=1`` one hidden by a later figure. ``bbox`` is
the box of the whole drawn figure (all keypoints lie in it), ``segmentation``
the RLE of its visible pixels, and ``area`` the person scale that OKS divides
by: ``PERSON_AREA_RATIO`` x the box area, the value mmpose assumes for a COCO
person without a mask (the thin lines' pixel count would make that scale
depend on the line width).
"""
import math
import os
import os.path as osp
from dataclasses import dataclass
from typing import Callable, Dict, List, NamedTuple, Tuple

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils
from tqdm import tqdm

from .objects import (_ANN_ID_STRIDE, _COLOR_NAMES, SHAPE_CLASSES, SPLITS,
                      ShapesConfig, _background, _coco, _image_id, _paint,
                      draw_shape_mask)

_POSE_STREAM = 1  # see the determinism note in lumen_mm.datasets.shapes
_POSE_PART = 2  # image ids start at part * 10**6


def _rle(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask, dtype=np.uint8))
    rle['counts'] = rle['counts'].decode('ascii')
    return rle


def _box(mask: np.ndarray) -> Tuple[int, int, int, int]:
    """x, y, w, h of the pixels of ``mask``."""
    ys, xs = np.divmod(np.flatnonzero(mask), mask.shape[1])  # see ShapeObject
    x, y = int(xs.min()), int(ys.min())
    return x, y, int(xs.max()) - x + 1, int(ys.max()) - y + 1


KEYPOINT_NAMES = ('head', 'neck', 'left_hand', 'right_hand', 'hip',
                  'left_foot', 'right_foot')
SKELETON = (('head', 'neck'), ('neck', 'left_hand'), ('neck', 'right_hand'),
            ('neck', 'hip'), ('hip', 'left_foot'), ('hip', 'right_foot'))
PERSON_AREA_RATIO = 0.53

# Body proportions as fractions of the standing height (head top to feet).
_HEAD_RADIUS = 0.09
_NECK = 0.03  # line between the neck keypoint and the head disc
_TORSO = 0.32  # neck to hip; the arms start at the neck
_ARM = (0.17, 0.17)  # upper arm, forearm
_LEG = (0.24, 0.23)  # thigh, shin
# Hands and feet stay this far on their own side of the torso axis, and the
# hands this far from the head disc.
_SIDE_MARGIN = 0.1
_HEAD_CLEARANCE = 0.05
# Degrees. Limb angles are measured from hanging straight down, outwards;
# a bend turns the second segment further out (negative: inwards). A straight
# limb within these ranges always meets the margins above.
_TILT = 15.0
_ARM_RAISE, _ELBOW_BEND = (20.0, 160.0), (-90.0, 90.0)
_LEG_RAISE, _KNEE_BEND = (15.0, 60.0), (-45.0, 45.0)
# Bones drawn between joints; elbows and knees are drawn, not annotated.
_BONES = (('head', 'neck'), ('neck', 'hip'), ('neck', 'left_elbow'),
          ('left_elbow', 'left_hand'), ('neck', 'right_elbow'),
          ('right_elbow', 'right_hand'), ('hip', 'left_knee'),
          ('left_knee', 'left_foot'), ('hip', 'right_knee'),
          ('right_knee', 'right_foot'))


@dataclass(frozen=True)
class PoseConfig:
    """What one pose image may contain."""
    min_people: int = 1
    max_people: int = 3
    # Standing height as a fraction of the image size (30-100 px of 128).
    # Raised arms make a figure up to 1.12 times as tall, hence <= 0.8.
    min_height: float = 0.23
    max_height: float = 0.78
    max_distractors: int = 3
    distractor_size: Tuple[int, int] = (8, 24)
    # An earlier figure keeps this fraction of its pixels visible, and two
    # figures' boxes share at most this fraction of the smaller box.
    min_visible: float = 0.8
    max_box_overlap: float = 0.25
    max_tries: int = 20

    def __post_init__(self):
        if not 1 <= self.min_people <= self.max_people < _ANN_ID_STRIDE:
            raise ValueError('need 1 <= min_people <= max_people < '
                             f'{_ANN_ID_STRIDE}, got {self.min_people}, '
                             f'{self.max_people}')
        if not 0 < self.min_height <= self.max_height <= 0.8:
            raise ValueError('need 0 < min_height <= max_height <= 0.8 '
                             '(fractions of the image size), got '
                             f'{self.min_height}, {self.max_height}')


@dataclass(eq=False)
class PersonFigure:
    """One stick figure; keypoints in ``KEYPOINT_NAMES`` order."""
    color: str
    keypoints: np.ndarray  # (K, 2) int pixel indices x, y
    full_mask: np.ndarray  # (H, W) bool, the whole drawn figure
    mask: np.ndarray  # (H, W) bool, its visible pixels
    visible: np.ndarray  # (K,) bool, keypoint not hidden by a later figure

    def to_coco(self, ann_id: int, image_id: int) -> dict:
        """COCO keypoint annotation (see the module doc), plus ``color``."""
        x, y, w, h = _box(self.full_mask)
        keypoints = []
        for (kx, ky), vis in zip(self.keypoints.tolist(),
                                 self.visible.tolist()):
            keypoints += [kx + 0.5, ky + 0.5, 2 if vis else 1]
        return dict(
            id=ann_id,
            image_id=image_id,
            category_id=1,
            bbox=[x, y, w, h],
            area=round(PERSON_AREA_RATIO * w * h, 2),
            iscrowd=0,
            num_keypoints=len(KEYPOINT_NAMES),
            keypoints=keypoints,
            segmentation=_rle(self.mask),
            color=self.color)


@dataclass
class PoseSample:
    """One pose image with its figures in drawing order."""
    image: np.ndarray  # (H, W, 3) uint8 RGB
    people: List[PersonFigure]


# Figure geometry uses complex numbers x + iy for 2-D points (y down): plain
# Python arithmetic, far faster than numpy on single points.


def _direction(angle: float, down: complex, out: complex) -> complex:
    rad = math.radians(angle)
    return math.cos(rad) * down + math.sin(rad) * out


def _limb(rng: np.random.Generator, root: complex,
          lengths: Tuple[float, float], raise_range: Tuple[float, float],
          bend_range: Tuple[float, float], down: complex, out: complex,
          valid: Callable[[complex], bool]) -> Tuple[complex, complex]:
    """Middle and end joint of a two-segment limb; a bend that breaks
    ``valid(end)`` is straightened."""
    raised = rng.uniform(*raise_range)
    bend = rng.uniform(*bend_range)
    middle = root + lengths[0] * _direction(raised, down, out)
    end = middle + lengths[1] * _direction(raised + bend, down, out)
    if not valid(end):
        end = middle + lengths[1] * _direction(raised, down, out)
    return middle, end


def _sample_joints(rng: np.random.Generator) -> Dict[str, complex]:
    """Joints of a figure of height 1, hip at the origin."""
    tilt = math.radians(rng.uniform(-_TILT, _TILT))
    up = complex(math.sin(tilt), -math.cos(tilt))
    left = up * 1j  # the person's left: image right of an upright figure
    joints = dict(hip=0j, neck=_TORSO * up)
    joints['head'] = joints['neck'] + (_NECK + _HEAD_RADIUS) * up
    for side, sign in (('left', 1.0), ('right', -1.0)):

        def on_side(point: complex, clear_head: bool) -> bool:
            along_left = (point * left.conjugate()).real
            return (sign * along_left >= _SIDE_MARGIN and
                    (not clear_head or abs(point - joints['head']) >=
                     _HEAD_RADIUS + _HEAD_CLEARANCE))

        joints[f'{side}_elbow'], joints[f'{side}_hand'] = _limb(
            rng, joints['neck'], _ARM, _ARM_RAISE, _ELBOW_BEND, -up,
            sign * left, lambda p: on_side(p, clear_head=True))
        joints[f'{side}_knee'], joints[f'{side}_foot'] = _limb(
            rng, joints['hip'], _LEG, _LEG_RAISE, _KNEE_BEND, -up,
            sign * left, lambda p: on_side(p, clear_head=False))
    return joints


def draw_stick_figure(joints: Dict[str, Tuple[int, int]], height: float,
                      image_size: int) -> np.ndarray:
    """(H, W) bool mask of a figure with integer ``joints`` (pixel indices).

    Lines are ``height / 20`` wide (at least 2 px) with round joints, so that
    every joint's own pixel is drawn; the head is a filled disc.
    """
    canvas = Image.new('L', (image_size, image_size), 0)
    draw = ImageDraw.Draw(canvas)
    for a, b in _BONES:
        draw.line([joints[a], joints[b]], fill=1, width=_line_width(height))
    for name, (x, y) in joints.items():
        r = _drawn_radius(name, height)
        draw.ellipse([x - r, y - r, x + r, y + r], fill=1)
    return np.asarray(canvas, dtype=bool)


def _line_width(height: float) -> int:
    return max(2, round(0.05 * height))


def _drawn_radius(joint: str, height: float) -> float:
    """Radius of the disc drawn at a joint: the head, or a round joint."""
    if joint == 'head':
        return max(_line_width(height) + 1.0, _HEAD_RADIUS * height)
    return _line_width(height) / 2


class _FigurePlacement(NamedTuple):
    color: str
    keypoints: np.ndarray  # (K, 2) int
    mask: np.ndarray  # (H, W) bool, the whole figure
    box: Tuple[int, int, int, int]  # x, y, w, h of the drawn discs


def _sample_figure(
        rng: np.random.Generator, cfg: PoseConfig, image_size: int
) -> Tuple[str, float, Dict[str, Tuple[int, int]]]:
    """Colour, height and integer joints of a random figure that fits."""
    color = _COLOR_NAMES[rng.integers(len(_COLOR_NAMES))]
    height = rng.uniform(cfg.min_height, cfg.max_height) * image_size
    joints = {k: v * height for k, v in _sample_joints(rng).items()}
    # What the drawing adds around each joint, plus 1 px for rounding.
    pads = [(_drawn_radius(k, height) + 1, v) for k, v in joints.items()]
    low = (max(pad - v.real for pad, v in pads),
           max(pad - v.imag for pad, v in pads))
    high = (min(image_size - 1 - pad - v.real for pad, v in pads),
            min(image_size - 1 - pad - v.imag for pad, v in pads))
    if high[0] < low[0] or high[1] < low[1]:
        raise ValueError(
            f'a {height:.0f} px figure does not fit a {image_size} px image: '
            'lower PoseConfig.max_height or raise the image size')
    dx, dy = rng.uniform(low, high)
    return color, height, {
        k: (round(v.real + dx), round(v.imag + dy))
        for k, v in joints.items()
    }


def _figure_box(joints: Dict[str, Tuple[int, int]],
                height: float) -> Tuple[int, int, int, int]:
    """x, y, w, h around the discs drawn at the joints (the lines between
    them are no wider), known before drawing."""
    reach = [(x, y, _drawn_radius(k, height)) for k, (x, y) in joints.items()]
    x0 = math.floor(min(x - r for x, _, r in reach))
    y0 = math.floor(min(y - r for _, y, r in reach))
    x1 = math.ceil(max(x + r for x, _, r in reach))
    y1 = math.ceil(max(y + r for _, y, r in reach))
    return x0, y0, x1 - x0 + 1, y1 - y0 + 1


def _box_overlap(a: Tuple[int, int, int, int],
                 b: Tuple[int, int, int, int], grow: int = 0) -> float:
    """Intersection of two boxes (each grown by ``grow`` px) over the
    smaller one's area."""
    w = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]) + 2 * grow
    h = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]) + 2 * grow
    if w <= 0 or h <= 0:
        return 0.0
    return w * h / min(a[2] * a[3], b[2] * b[3])


def _place_figures(rng: np.random.Generator, cfg: PoseConfig,
                   image_size: int) -> List[_FigurePlacement]:
    """Figures in drawing order. A placement is rejected when it would hide
    more than ``1 - min_visible`` of an earlier figure, share more than
    ``max_box_overlap`` of a box with one, or touch one of the same colour."""
    placed, visible = [], []
    for _ in range(rng.integers(cfg.min_people, cfg.max_people + 1)):
        for _ in range(cfg.max_tries):
            color, height, joints = _sample_figure(rng, cfg, image_size)
            box = _figure_box(joints, height)
            if any(_box_overlap(p.box, box) > cfg.max_box_overlap or (
                    p.color == color and _box_overlap(p.box, box, grow=1))
                   for p in placed):
                continue
            mask = draw_stick_figure(joints, height, image_size)
            kept = [vis & ~mask for vis in visible]
            if all(k.sum() >= cfg.min_visible * p.mask.sum()
                   for k, p in zip(kept, placed)):
                keypoints = np.array([joints[k] for k in KEYPOINT_NAMES])
                placed.append(_FigurePlacement(color, keypoints, mask, box))
                visible = kept + [mask]
                break
        else:
            break  # no room left
    return placed


def _place_distractors(rng: np.random.Generator, cfg: PoseConfig,
                       image_size: int,
                       taken: List[Tuple[int, int, int, int]]
                       ) -> List[Tuple[str, str, np.ndarray]]:
    """0-``max_distractors`` shapes (shape, colour, mask) that keep 2 px
    away from the boxes in ``taken`` and from each other."""
    taken = list(taken)
    shapes = []
    for _ in range(rng.integers(0, cfg.max_distractors + 1)):
        for _ in range(cfg.max_tries):
            size = int(rng.integers(cfg.distractor_size[0],
                                    cfg.distractor_size[1] + 1))
            x0, y0 = rng.integers(0, image_size - size + 1, size=2)
            box = (int(x0), int(y0), size, size)
            if any(_box_overlap(box, t, grow=1) for t in taken):
                continue
            shape = SHAPE_CLASSES[rng.integers(len(SHAPE_CLASSES))]
            color = _COLOR_NAMES[rng.integers(len(_COLOR_NAMES))]
            shapes.append((shape, color,
                           draw_shape_mask(shape, box[0], box[1], size,
                                           image_size)))
            taken.append(box)
            break
    return shapes


def generate_pose_sample(
        rng: np.random.Generator,
        cfg: PoseConfig = PoseConfig(),
        shapes_cfg: ShapesConfig = ShapesConfig()) -> PoseSample:
    """Draw one pose image; ``shapes_cfg`` gives its size and style."""
    size = shapes_cfg.image_size
    canvas = _background(rng, size)
    placed = _place_figures(rng, cfg, size)
    distractors = _place_distractors(rng, cfg, size, [p.box for p in placed])
    people = []
    hidden = np.zeros((size, size), dtype=bool)
    for p in reversed(placed):
        xs, ys = p.keypoints.T
        people.append(
            PersonFigure(p.color, p.keypoints, p.mask, p.mask & ~hidden,
                         ~hidden[ys, xs]))
        hidden |= p.mask
    people.reverse()
    layers = [(p.mask, p.color) for p in placed]
    layers += [(mask, color) for _, color, mask in distractors]
    return PoseSample(_paint(rng, canvas, layers, shapes_cfg.color_jitter),
                      people)


def pose_categories() -> List[dict]:
    """The one COCO keypoint category, skeleton 1-based as COCO's."""
    skeleton = [[KEYPOINT_NAMES.index(a) + 1,
                 KEYPOINT_NAMES.index(b) + 1] for a, b in SKELETON]
    return [dict(id=1, name='person', supercategory='person',
                 keypoints=list(KEYPOINT_NAMES), skeleton=skeleton)]


def write_pose_split(out_dir: str, split: str, num_images: int, seed: int,
                     shapes_cfg: ShapesConfig, bar: tqdm,
                     cfg: PoseConfig = PoseConfig()) -> dict:
    """Write ``pose_{split}/`` and return its COCO keypoint dict."""
    img_dir = osp.join(out_dir, f'pose_{split}')
    os.makedirs(img_dir, exist_ok=True)
    images, anns = [], []
    for i in range(num_images):
        sample = generate_pose_sample(
            np.random.default_rng(
                [seed, SPLITS.index(split), i, _POSE_STREAM]), cfg,
            shapes_cfg)
        image_id = _image_id(_POSE_PART, split, i)
        file_name = f'{i:06d}.png'
        Image.fromarray(sample.image).save(osp.join(img_dir, file_name))
        images.append(dict(id=image_id, file_name=file_name,
                           height=shapes_cfg.image_size,
                           width=shapes_cfg.image_size))
        anns += [person.to_coco(image_id * _ANN_ID_STRIDE + k + 1, image_id)
                 for k, person in enumerate(sample.people)]
        bar.update()
    return dict(_coco(images, anns), categories=pose_categories())
