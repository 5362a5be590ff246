"""Counting images in COCO format: which class to count, and how many."""
from typing import Union

from mmdet.datasets import CocoDataset
from mmdet.registry import DATASETS


@DATASETS.register_module()
class LumenCountingDataset(CocoDataset):
    """A COCO instances file whose images also hold ``count_category_id``
    (the class to count) and ``count`` (how many there are).

    Every object is annotated, so the instances of the counted class are
    the heatmap targets, as for detection (Sec. 4.4 counts confident peaks).
    Adds ``count_label`` (contiguous label) and ``gt_count`` to each item.
    """

    def parse_data_info(self, raw_data_info: dict) -> Union[dict, list]:
        info = super().parse_data_info(raw_data_info)
        img = raw_data_info['raw_img_info']
        if 'count_category_id' not in img or 'count' not in img:
            raise KeyError(
                f'Image {img.get("file_name")!r} of {self.ann_file} has no '
                '`count_category_id`/`count`: LumenCountingDataset reads '
                'counting files written by tools/make_shapes.py (or converted '
                'to that layout).')
        info['count_label'] = self.cat2label[img['count_category_id']]
        info['gt_count'] = int(img['count'])
        return info
