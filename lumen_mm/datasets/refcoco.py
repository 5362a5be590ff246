"""RefCOCO with one sentence per referred object, drawn anew at each fetch;
its refs pickle read as plain data."""
from contextlib import contextmanager
from typing import List

import numpy as np
from mmdet.datasets import RefCocoDataset
from mmdet.registry import DATASETS
from mmengine.fileio.handlers import PickleHandler

RESAMPLE = 'resample'


@DATASETS.register_module()
class LumenRefCocoDataset(RefCocoDataset):
    """mmdet's ``RefCocoDataset`` with ``text_mode='resample'``.

    mmdet's ``'random'`` draws one sentence per referred object once, when
    the dataset loads, and keeps it for the whole run (on Lumen-Shapes 2473
    of the 7430 training sentences are never seen); ``'original'`` asks
    every sentence in one sample, a prompt per sentence. ``'resample'``
    draws one sentence per object each time the image is fetched, as
    referring-segmentation training commonly samples one sentence per
    object and iteration: every sentence is seen, at one prompt per object.
    Other modes are mmdet's.

    mmdet reads ``split_file`` (``refs(*).p``) with ``pickle.load``, which
    runs whatever function a pickle names: a malicious file ran code when
    the dataset was built. Here it is read with an allow-list of plain data
    (:func:`lumen_mm.utils.load_plain_pickle`); configs use this class for
    every RefCOCO-style dataset.
    """

    def __init__(self, *args, text_mode: str = 'random', **kwargs) -> None:
        self.resample = text_mode == RESAMPLE
        super().__init__(
            *args, text_mode='original' if self.resample else text_mode,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        with _plain_pickles(self.split_file):
            data_list = super().load_data_list()
        if self.resample:
            for info in data_list:
                info['sentence_objects'] = _objects(info['instances'])
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if self.resample:
            objects = np.asarray(info.pop('sentence_objects'))
            keep = [np.random.choice(np.flatnonzero(objects == obj))
                    for obj in np.unique(objects)]
            info['instances'] = [info['instances'][i] for i in keep]
            info['text'] = [info['text'][i] for i in keep]
        return info


def _objects(instances: List[dict]) -> List[int]:
    """Object index of each sentence: ``'original'`` lists an object's
    sentences one after the other, each with the object's mask."""
    objects, obj, previous = [], -1, None
    for ins in instances:
        if ins['mask'] != previous:
            obj, previous = obj + 1, ins['mask']
        objects.append(obj)
    return objects


class _PlainPickleHandler(PickleHandler):
    """mmengine's pickle handler reading plain data only."""

    def __init__(self, filename: str) -> None:
        self.filename = filename

    def load_from_fileobj(self, file, **kwargs):
        from lumen_mm.utils import load_plain_pickle
        return load_plain_pickle(file, self.filename)


@contextmanager
def _plain_pickles(filename: str):
    """``mmengine.load(..., file_format='pkl')`` reads plain data only while
    the block runs (mmdet's ``RefCocoDataset.load_data_list`` calls it on
    ``filename``); mmengine keeps its handlers in this module-level dict."""
    from mmengine.fileio import io
    saved = io.file_handlers['pkl']
    io.file_handlers['pkl'] = _PlainPickleHandler(filename)
    try:
        yield
    finally:
        io.file_handlers['pkl'] = saved
