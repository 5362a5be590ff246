"""LLaVA-Instruct-150k style conversations (VQA, Sec. 4.1.3)."""
import os.path as osp
import re
from typing import List

from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from mmdet.registry import DATASETS

# LLaVA marks where the image goes; Lumen always puts it first.
_IMAGE_MARK = re.compile(r'\s*<image>\s*')


def strip_image_mark(text: str) -> str:
    """A LLaVA turn's text without its ``<image>`` mark (the template
    inserts the image itself)."""
    return _IMAGE_MARK.sub(' ', text).strip()


@DATASETS.register_module()
class LumenVQADataset(BaseDataset):
    """A JSON list of ``{"id", "image", "conversations": [{"from": "human",
    "value": ...}, {"from": "gpt", "value": ...}, ...]}`` items (the
    LLaVA-Instruct-150k layout); ``image`` is relative to
    ``data_prefix['img']``.

    Each item gives ``img_path``, ``img_id`` and ``conversation``: a list of
    (question, answer) turns with LLaVA's ``<image>`` mark removed (the
    template inserts the image itself).
    """

    def __init__(self, *args, data_prefix: dict = dict(img=''), **kwargs):
        super().__init__(*args, data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        items = load(self.ann_file)
        if not isinstance(items, list):
            raise ValueError(
                f'{self.ann_file} is not a LLaVA-Instruct JSON list of '
                '{"image", "conversations"} items.')
        data_list = []
        for item in items:
            turns = item.get('conversations', [])
            roles = [t.get('from') for t in turns]
            if not turns or roles != ['human', 'gpt'] * (len(turns) // 2):
                raise ValueError(
                    f'Item {item.get("id")!r} of {self.ann_file}: expected '
                    'alternating human/gpt turns, got '
                    f'{roles}.')
            conversation = [(strip_image_mark(q['value']),
                             a['value'].strip())
                            for q, a in zip(turns[::2], turns[1::2])]
            data_list.append(
                dict(
                    img_path=osp.join(self.data_prefix['img'], item['image']),
                    img_id=str(item.get('id', len(data_list))),
                    conversation=conversation))
        return data_list
