"""Packing a Lumen sample: mmdet's ``PackDetInputs`` with the metainfo keys
that route it through Lumen."""
from typing import Sequence

from mmdet.datasets.transforms import PackDetInputs
from mmdet.registry import TRANSFORMS

from lumen_mm.tasks import META_KEYS


@TRANSFORMS.register_module()
class PackLumenInputs(PackDetInputs):
    """``PackDetInputs`` whose ``meta_keys`` default to every key a task of
    :data:`lumen_mm.tasks.TASKS` needs (``task``, ``prompts``,
    ``prompt_labels``, a person crop's frame...), so configs need not list
    them; ``extra_meta_keys`` adds more."""

    def __init__(self,
                 meta_keys: Sequence[str] = META_KEYS,
                 extra_meta_keys: Sequence[str] = ()) -> None:
        super().__init__(
            meta_keys=tuple(dict.fromkeys((*meta_keys, *extra_meta_keys))))
