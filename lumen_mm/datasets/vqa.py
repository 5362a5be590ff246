"""LLaVA-Instruct-150k style conversations (VQA, Sec. 4.1.3)."""
import logging
import os.path as osp
import re
from typing import List, Tuple

from mmengine.dataset import BaseDataset
from mmengine.fileio import load
from mmengine.logging import print_log
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

    As LLaVA's training (``preprocess`` in llava/train/train.py) does, a
    conversation that opens with a turn not from the human loses that turn;
    so does one that ends on an unanswered question (LLaVA trains on the
    answers only). The number of items changed is logged.
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
        leading = trailing = 0
        for item in items:
            turns = item.get('conversations')
            if not turns:
                raise ValueError(
                    f'Item {item.get("id")!r} of {self.ann_file} has no '
                    '"conversations": fix or remove it.')
            if turns[0].get('from') != 'human':
                turns = turns[1:]
                leading += 1
            if len(turns) % 2 and turns[-1].get('from') == 'human':
                turns = turns[:-1]
                trailing += 1
            if not turns:  # it was a lone answer or question
                continue
            info = dict(
                img_path=osp.join(self.data_prefix['img'], item['image']),
                img_id=str(item.get('id', len(data_list))),
                conversation=self._pairs(item, turns))
            if 'type' in item:  # a question kind (Lumen-Shapes writes one)
                info['question_type'] = str(item['type'])
            data_list.append(info)
        if leading or trailing:
            print_log(
                f'{self.ann_file}: dropped the leading non-human turn of '
                f'{leading} and the unanswered last question of {trailing} '
                f'of {len(items)} conversations (as LLaVA\'s training does); '
                f'{len(items) - len(data_list)} were left empty and skipped.',
                logger='current', level=logging.WARNING)
        return data_list

    def _pairs(self, item: dict, turns: List[dict]) -> List[Tuple[str, str]]:
        """``turns`` as (question, answer) pairs; anything but alternating
        human/gpt turns is an error, as in LLaVA."""
        roles = [t.get('from') for t in turns]
        if roles != ['human', 'gpt'] * (len(turns) // 2):
            raise ValueError(
                f'Item {item.get("id")!r} of {self.ann_file}: expected '
                f'alternating human/gpt turns, got {roles}. Fix or remove '
                'this item.')
        return [(strip_image_mark(q['value']), a['value'].strip())
                for q, a in zip(turns[::2], turns[1::2])]
