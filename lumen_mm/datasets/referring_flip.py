"""Horizontal flips for referring expressions."""
import re
from typing import Optional

from mmdet.datasets.transforms import RandomFlip
from mmdet.registry import TRANSFORMS

# "left", "right", "leftmost", "left-most", "to the right of"...
_SIDE_WORD = re.compile(r'\b(left|right)(?=(most)?\b)', re.IGNORECASE)
_MIRROR = {'left': 'right', 'right': 'left'}


def swap_left_right(sentence: str) -> str:
    """The sentence that names the same object in the mirrored image."""

    def mirror(match: re.Match) -> str:
        word = match.group(1)
        swapped = _MIRROR[word.lower()]
        return swapped.capitalize() if word[0].isupper() else swapped

    return _SIDE_WORD.sub(mirror, sentence)


@TRANSFORMS.register_module()
class RandomFlipReferring(RandomFlip):
    """mmdet's horizontal ``RandomFlip`` that also mirrors the sentences.

    Flipping a grounding sample alone would make "the left-most square" name
    the wrong square; swapping "left" and "right" in every sentence of a
    flipped image keeps each sentence on its object (referring-expression
    models, e.g. MDETR, augment this way). Place it before
    ``LumenGroundPrompts``, which reads the boxes from the flipped masks.

    Args:
        prob: probability of flipping a sample.
    """

    def __init__(self, prob: float = 0.5) -> None:
        super().__init__(prob=prob, direction='horizontal')

    def transform(self, results: dict) -> Optional[dict]:
        results = super().transform(results)
        if results['flip'] and 'text' in results:
            results['text'] = [swap_left_right(t) for t in results['text']]
        return results
