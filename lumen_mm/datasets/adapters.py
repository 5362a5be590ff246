"""Loaders for the paper's datasets that mmdet/mmpose lack as such.

* :class:`CocoFormatDataset`: detection in the COCO layout whose classes are
  the annotation file's own categories (OpenImages converted to COCO, with
  601 classes, needs no class list in the config).
* :class:`LumenVOCDataset`: mmdet's ``VOCDataset`` giving the class names as
  prompts (``text``), in plain words (``tvmonitor`` -> ``tv monitor``) for
  the zero-shot evaluation of Table 4.
* :class:`FSC147Dataset`: FSC-147 (object counting) in its released layout.

COCO 2017, Objects365, RefCOCO/+/g, COCO keypoints, AI Challenger (after
``tools/convert_aic_to_coco.py``) and PASCAL VOC load with mmdet's and
mmpose's own datasets; LLaVA-Instruct with :class:`LumenVQADataset`.
"""
import os.path as osp
from typing import List, Optional, Sequence

import numpy as np
from mmdet.datasets import BaseDetDataset, CocoDataset, VOCDataset
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.fileio import get_local_path, load


@DATASETS.register_module()
class CocoFormatDataset(CocoDataset):
    """A COCO-layout detection file whose classes are its categories, in
    the file's order (mmdet maps category ids to labels in that order),
    unless ``metainfo`` names them."""

    METAINFO = dict(classes=None, palette=None)

    def COCOAPI(self, path: str) -> COCO:  # noqa: N802 (mmdet's name)
        """mmdet's loader calls ``self.COCOAPI(path)``: read the classes from
        the parsed file there, so a large file is parsed once."""
        coco = COCO(path)
        if not self._metainfo.get('classes'):
            cats = coco.dataset.get('categories', [])
            if not cats:
                raise ValueError(
                    f'{path} has no categories: CocoFormatDataset reads the '
                    'class names from them (or give '
                    'metainfo=dict(classes=...)).')
            self._metainfo['classes'] = tuple(c['name'] for c in cats)
        return coco


@DATASETS.register_module()
class LumenVOCDataset(VOCDataset):
    """PASCAL VOC with its class names as prompts (``text``).

    Args:
        class_prompts: the words asked for each class, in class order;
            defaults to the class names.
    """

    def __init__(self,
                 *args,
                 class_prompts: Optional[Sequence[str]] = None,
                 **kwargs) -> None:
        self.class_prompts = class_prompts
        super().__init__(*args, **kwargs)
        classes = self.metainfo['classes']
        if class_prompts is not None and len(class_prompts) != len(classes):
            raise ValueError(
                f'{len(class_prompts)} class_prompts for {len(classes)} VOC '
                'classes: give one prompt per class, in class order.')

    def parse_data_info(self, img_info: dict) -> dict:
        info = super().parse_data_info(img_info)
        info['text'] = tuple(self.class_prompts or self.metainfo['classes'])
        return info


@DATASETS.register_module()
class FSC147Dataset(BaseDetDataset):
    """FSC-147 (Ranjan et al., CVPR 2021) in its released layout::

        annotation_FSC147_384.json   {image: {"points": [[x, y], ...],
                                              "box_examples_coordinates": ...}}
        Train_Test_Val_FSC_147.json  {"train": [...], "val": [...],
                                      "test": [...]}
        ImageClasses_FSC147.txt      "<image>\\t<class name>" per line
        images_384_VarV2/            the images

    Each image asks for its one class; ``gt_count`` is its number of dot
    annotations, which also become zero-size boxes (``instances``) for
    visualisation and for training. The classes are the names of the class
    file, sorted; ``text`` holds them (as ``return_classes`` does).

    Args:
        split_file / class_file: the two other annotation files, relative to
            ``data_root``.
        split: ``'train'``, ``'val'`` or ``'test'``.
    """

    METAINFO = dict(classes=None)

    def __init__(self,
                 *args,
                 split_file: str = 'Train_Test_Val_FSC_147.json',
                 class_file: str = 'ImageClasses_FSC147.txt',
                 split: str = 'val',
                 **kwargs) -> None:
        if split not in ('train', 'val', 'test'):
            raise ValueError(f"split={split!r}; FSC-147 has 'train', 'val' "
                             "and 'test'.")
        self.split_file = split_file
        self.class_file = class_file
        self.split = split
        super().__init__(*args, **kwargs)

    def _path(self, name: str) -> str:
        return osp.join(self.data_root, name) if self.data_root else name

    def load_data_list(self) -> List[dict]:
        annotations = load(self.ann_file)
        images = load(self._path(self.split_file))[self.split]
        with get_local_path(self._path(self.class_file)) as path:
            with open(path) as f:
                rows = [line.rstrip('\n').split('\t') for line in f
                        if line.strip()]
        bad = [r for r in rows if len(r) != 2]
        if bad:
            raise ValueError(
                f'{self.class_file}: expected "<image>\\t<class>" lines, got '
                f'{bad[0]!r}.')
        class_of = dict(rows)
        classes = tuple(sorted(set(class_of.values())))
        self._metainfo['classes'] = classes
        label_of = {c: i for i, c in enumerate(classes)}
        data_list = []
        for name in images:
            if name not in annotations or name not in class_of:
                raise KeyError(
                    f'FSC-147 image {name!r} of the {self.split} split has no '
                    f'entry in {osp.basename(self.ann_file)} or '
                    f'{self.class_file}.')
            points = np.asarray(annotations[name]['points'],
                                np.float32).reshape(-1, 2)
            label = label_of[class_of[name]]
            data_list.append(
                dict(
                    img_path=osp.join(self.data_prefix.get('img', ''), name),
                    img_id=name,
                    height=annotations[name].get('H'),
                    width=annotations[name].get('W'),
                    text=classes,
                    count_label=label,
                    gt_count=len(points),
                    instances=[
                        dict(bbox=[x, y, x, y], bbox_label=label,
                             ignore_flag=0) for x, y in points.tolist()
                    ]))
        return data_list
