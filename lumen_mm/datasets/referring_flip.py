"""Flips for referring expressions: the image and the words that name sides."""
import re
from typing import List, Optional, Union

from mmdet.datasets.transforms import RandomFlip
from mmdet.registry import TRANSFORMS

# The words a flip about each axis swaps: "left", "leftmost", "left-most",
# "to the right of" for a horizontal flip; "top-most", "above", "upper"...
# for a vertical one. A diagonal flip (both axes) swaps both sets.
_SWAPS = {
    'horizontal': {'left': 'right', 'right': 'left'},
    'vertical': {'top': 'bottom', 'bottom': 'top', 'above': 'below',
                 'below': 'above', 'upper': 'lower', 'lower': 'upper'},
}
_SWAPS['diagonal'] = {**_SWAPS['horizontal'], **_SWAPS['vertical']}
_PATTERNS = {
    direction: re.compile(r'\b(' + '|'.join(words) + r')(?=(most)?\b)',
                          re.IGNORECASE)
    for direction, words in _SWAPS.items()
}


def flip_sentence(sentence: str, direction: str = 'horizontal') -> str:
    """The sentence that names the same object in the flipped image.

    Args:
        sentence: a referring expression.
        direction: the flip, as mmdet's ``RandomFlip`` names it:
            ``'horizontal'``, ``'vertical'`` or ``'diagonal'`` (both).
    """
    if direction not in _SWAPS:
        raise ValueError(f'Unknown flip direction {direction!r}; use one of '
                         f'{sorted(_SWAPS)}.')
    swaps = _SWAPS[direction]

    def swap(match: re.Match) -> str:
        word = match.group(1)
        swapped = swaps[word.lower()]
        return swapped.capitalize() if word[0].isupper() else swapped

    return _PATTERNS[direction].sub(swap, sentence)


@TRANSFORMS.register_module()
class RandomFlipReferring(RandomFlip):
    """mmdet's ``RandomFlip`` that also flips the sentences.

    Flipping a grounding sample alone would make "the left-most square" name
    the wrong square; swapping "left" and "right" in every sentence of a
    horizontally flipped image (and "above" and "below", "top" and "bottom"
    of a vertically flipped one) keeps each sentence on its object
    (referring-expression models, e.g. MDETR, augment this way). Place it
    before ``LumenGroundPrompts``, which reads the boxes from the flipped
    masks.

    Args:
        prob: probability of flipping a sample; with several directions, a
            list of one probability per direction, as for ``RandomFlip``.
        direction: ``'horizontal'``, ``'vertical'``, ``'diagonal'`` or a
            list of them.
    """

    def __init__(self,
                 prob: Union[float, List[float]] = 0.5,
                 direction: Union[str, List[str]] = 'horizontal') -> None:
        super().__init__(prob=prob, direction=direction)

    def transform(self, results: dict) -> Optional[dict]:
        results = super().transform(results)
        if results['flip'] and 'text' in results:
            results['text'] = [
                flip_sentence(t, results['flip_direction'])
                for t in results['text']
            ]
        return results
