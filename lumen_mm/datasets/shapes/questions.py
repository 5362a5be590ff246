"""Lumen-Shapes visual question answering: 1-3 questions about each shapes
image (colour, count, position, shape), in LLaVA-Instruct-150k format: one
entry per question, a single human / gpt turn, ``id`` ``'{image_id}_{j}'``
and an extra ``type``.
"""
from collections import Counter
from typing import Dict, List, NamedTuple, Sequence, Tuple

import numpy as np

from .objects import SHAPE_CLASSES, SPLITS, ShapeObject, _image_id

_QA_STREAM = 3  # see the determinism note in lumen_mm.datasets.shapes

QUESTION_TYPES = ('colour', 'count', 'position', 'shape')
# Two objects' visible-box centres differ by at least this along the axis a
# position question asks about.
POSITION_MARGIN = 8.0  # px
# A count question asks about a class in the image this many times as often
# as about an absent one (answer "0").
_PRESENT_WEIGHT = 3.0


def plural(shape: str) -> str:
    """English plural of a class name: 'crosses', 'stars'."""
    return shape + ('es' if shape.endswith('s') else 's')


class _Question(NamedTuple):
    text: str
    answer: str
    weight: float = 1.0


def _unique_names(objects: Sequence[ShapeObject]) -> Dict[int, str]:
    """The shortest name that picks each object out: class or colour+class."""
    shapes = Counter(o.shape for o in objects)
    pairs = Counter((o.color, o.shape) for o in objects)
    names = {}
    for i, o in enumerate(objects):
        if shapes[o.shape] == 1:
            names[i] = o.shape
        elif pairs[o.color, o.shape] == 1:
            names[i] = f'{o.color} {o.shape}'
    return names


def _position_questions(rng: np.random.Generator,
                        objects: Sequence[ShapeObject]) -> List[_Question]:
    """Left/right and above/below of two uniquely named objects, with the
    two options in random order."""
    names = _unique_names(objects)
    questions = []
    for i, a in names.items():
        for j, b in names.items():
            if i == j:
                continue
            dx, dy = np.subtract(objects[i].center, objects[j].center)
            swap_x, swap_y = rng.integers(2, size=2)
            if abs(dx) >= POSITION_MARGIN:
                first, second = ('to the left', 'to the right')[::(
                    -1 if swap_x else 1)]
                questions.append(_Question(
                    f'Is the {a} {first} or {second} of the {b}?',
                    'left' if dx < 0 else 'right'))
            if abs(dy) >= POSITION_MARGIN:
                first, second = ('above', 'below')[::-1 if swap_y else 1]
                questions.append(_Question(
                    f'Is the {a} {first} or {second} the {b}?',
                    'above' if dy < 0 else 'below'))
    return questions


def shape_questions(rng: np.random.Generator,
                    objects: Sequence[ShapeObject],
                    max_questions: int = 3) -> List[Tuple[str, str, str]]:
    """1-``max_questions`` distinct (type, question, answer) about an image.

    Each answer is the only correct one: colours are asked of a class that
    occurs once, shapes of a colour that occurs once, positions only with
    ``POSITION_MARGIN``. A type is drawn uniformly among those that have a
    question left, then a question of that type.
    """
    shapes = Counter(o.shape for o in objects)
    colors = Counter(o.color for o in objects)
    candidates = dict(
        colour=[_Question(f'What colour is the {o.shape}?', o.color)
                for o in objects if shapes[o.shape] == 1],
        count=[_Question(f'How many {plural(s)} are there?', str(shapes[s]),
                         _PRESENT_WEIGHT if shapes[s] else 1.0)
               for s in SHAPE_CLASSES],
        position=_position_questions(rng, objects),
        shape=[_Question(f'What shape is the {o.color} object?', o.shape)
               for o in objects if colors[o.color] == 1])
    chosen = []
    for _ in range(rng.integers(1, max_questions + 1)):
        types = [t for t in QUESTION_TYPES if candidates[t]]
        kind = types[rng.integers(len(types))]
        weights = np.array([q.weight for q in candidates[kind]])
        question = candidates[kind].pop(
            rng.choice(len(weights), p=weights / weights.sum()))
        chosen.append((kind, question.text, question.answer))
    return chosen


def write_questions(split: str, coco: dict, seed: int) -> List[dict]:
    """LLaVA-Instruct entries, one per question, about the shapes images of
    ``split`` described by the COCO instances dict ``coco``."""
    objects = {img['id']: [] for img in coco['images']}
    for ann in coco['annotations']:
        objects[ann['image_id']].append(ShapeObject.from_coco(ann))
    entries = []
    for img in coco['images']:
        index = img['id'] - _image_id(0, split, 0)
        rng = np.random.default_rng(
            [seed, SPLITS.index(split), index, _QA_STREAM])
        for j, (kind, question, answer) in enumerate(
                shape_questions(rng, objects[img['id']])):
            entries.append(dict(
                id=f'{img["id"]}_{j}',
                image=f'{split}/{img["file_name"]}',
                conversations=[
                    {'from': 'human', 'value': f'<image>\n{question}'},
                    {'from': 'gpt', 'value': answer},
                ],
                type=kind))
    return entries
