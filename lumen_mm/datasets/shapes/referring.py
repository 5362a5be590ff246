"""Referring expressions about Lumen-Shapes objects.

Sentences come from four templates (``name``, ``extreme``, ``size``,
``relation``); each carries the predicate that says which objects it
describes, so it can be re-evaluated from the annotations alone. A sentence
is only used when it picks out one object with a margin to spare.
"""
from collections import Counter
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from .objects import ShapeObject, ShapesConfig

# An expression must hold with this margin and fail for every other object
# even when the margin is given away, so near-ties are never used.
SPATIAL_MARGIN = 4.0  # px between visible-box centres
SIZE_RATIO = 1.25  # between drawn sizes

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
