"""Loaders for the paper's datasets that mmdet/mmpose lack as such.

* :class:`CocoFormatDataset`: detection in the COCO layout whose classes are
  the annotation file's own categories (any file converted to COCO needs no
  class list in the config).
* :class:`LumenOpenImagesDataset`: OpenImages v6 from its released CSVs,
  read by mmdet's ``OpenImagesDataset``, with the class names as prompts.
* :class:`LumenVOCDataset`: mmdet's ``VOCDataset`` giving the class names as
  prompts (``text``), in plain words (``tvmonitor`` -> ``tv monitor``) for
  the zero-shot evaluation of Table 4.
* :class:`FSC147Dataset`: FSC-147 (object counting) in its released layout.

COCO 2017, Objects365 v2, RefCOCO/+/g, COCO keypoints, AI Challenger (after
``tools/convert_aic_to_coco.py``) and PASCAL VOC load with mmdet's and
mmpose's own datasets; LLaVA-Instruct with :class:`LumenVQADataset`.
"""
import os.path as osp
from typing import List, Optional, Sequence, Tuple

import numpy as np
from mmdet.datasets import (BaseDetDataset, CocoDataset, OpenImagesDataset,
                            VOCDataset)
from mmdet.datasets.api_wrappers import COCO
from mmdet.registry import DATASETS
from mmengine.fileio import exists, get_local_path, load
from PIL import Image

# EXIF orientations that turn the stored pixels by 90 degrees
_TRANSPOSED = (5, 6, 7, 8)


def read_image_size(path: str,
                    backend_args: Optional[dict] = None) -> Tuple[int, int]:
    """``(width, height)`` of an image as mmcv's ``LoadImageFromFile`` will
    decode it (EXIF orientation applied), from its header only: annotations
    in pixels of the decoded image need this size, and decoding every image
    of a large dataset to get it would take hours."""
    with get_local_path(path, backend_args=backend_args) as local:
        with Image.open(local) as img:
            width, height = img.size
            orientation = img.getexif().get(0x0112, 1)
    return (height, width) if orientation in _TRANSPOSED else (width, height)


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
class LumenOpenImagesDataset(OpenImagesDataset):
    """OpenImages v6 boxes from the released files, read by mmdet's
    ``OpenImagesDataset`` (paths relative to ``data_root``)::

        ann_file        oidv6-train-annotations-bbox.csv  (boxes, 0-1)
        label_file      class-descriptions-boxable.csv    (601 classes)
        hierarchy_file  bbox_labels_600_hierarchy.json
        meta_file       image sizes, one per image of ann_file in its order,
                        written by tools/openimages_image_metas.py (the CSV
                        has none, and its boxes are fractions of them)

    Images are ``data_prefix['img']/<ImageID>.jpg``. With
    ``return_classes=True`` each item's ``text`` holds the class names, the
    prompts of ``LumenDetPrompts``; it is added when an item is read, not
    stored in each of the 1.7M items as ``CocoDataset`` does.
    """

    def load_data_list(self) -> List[dict]:
        if not exists(self.meta_file, backend_args=self.backend_args):
            raise FileNotFoundError(
                f'{self.meta_file} (the OpenImages image sizes) does not '
                'exist: write it with `python tools/openimages_image_metas.py '
                f'{self.ann_file} {self.data_prefix["img"]} '
                f'{self.meta_file}`.')
        try:
            data_list = super().load_data_list()
        except AssertionError as e:  # mmdet checks the files with asserts
            raise ValueError(
                f'{self.ann_file}, {self.label_file} and {self.meta_file} do '
                'not match: every LabelName of the boxes must be in the label '
                'file, and the metas must list the CSV\'s images in its '
                'order. Regenerate the metas with '
                'tools/openimages_image_metas.py from this CSV.') from e
        self._class_names = tuple(self._metainfo['classes'])
        return data_list

    def get_data_info(self, idx: int) -> dict:
        info = super().get_data_info(idx)
        if self.return_classes:
            info['text'] = self._class_names
        return info


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

        annotation_FSC147_384.json   {image: {"H", "W", "points": [[x, y]],
                                              "box_examples_coordinates",
                                              "ratio_h", "ratio_w", ...}}
        Train_Test_Val_FSC_147.json  {"train", "val", "test", "val_coco",
                                      "test_coco": [image, ...]}
        ImageClasses_FSC147.txt      "<image>\\t<class name>" per line
        images_384_VarV2/            the images, resized to 384 px high

    ``H``/``W`` are the size of the original photo, not of the stored image;
    the points and exemplar boxes are in pixels of the stored image (the
    authors' test.py uses them on it unscaled), so ``height``/``width`` are
    read from the stored image's header.

    Each image asks for its one class; ``gt_count`` is its number of dot
    annotations, which also become zero-size boxes (``instances``) for
    visualisation and for training. The classes are the names of the class
    file, sorted; ``text`` holds them (as ``return_classes`` does).

    Args:
        split_file / class_file: the two other annotation files, relative to
            ``data_root``.
        split: one of :attr:`SPLITS`; ``val_coco``/``test_coco`` are the
            images of COCO classes within ``val``/``test``.
    """

    SPLITS = ('train', 'val', 'test', 'val_coco', 'test_coco')
    METAINFO = dict(classes=None)

    def __init__(self,
                 *args,
                 split_file: str = 'Train_Test_Val_FSC_147.json',
                 class_file: str = 'ImageClasses_FSC147.txt',
                 split: str = 'val',
                 **kwargs) -> None:
        if split not in self.SPLITS:
            raise ValueError(f'split={split!r}; FSC-147 has the splits '
                             f'{", ".join(map(repr, self.SPLITS))}.')
        self.split_file = split_file
        self.class_file = class_file
        self.split = split
        super().__init__(*args, **kwargs)

    def _path(self, name: str) -> str:
        return osp.join(self.data_root, name) if self.data_root else name

    def load_data_list(self) -> List[dict]:
        annotations = load(self.ann_file)
        splits = load(self._path(self.split_file))
        if self.split not in splits:
            raise KeyError(
                f'{self.split_file} has no {self.split!r} split (it has '
                f'{sorted(splits)}): use the release of the authors\' '
                'LearningToCountEverything repository, whose data/ folder '
                'has all five.')
        images = splits[self.split]
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
            img_path = osp.join(self.data_prefix.get('img', ''), name)
            width, height = read_image_size(img_path, self.backend_args)
            data_list.append(
                dict(
                    img_path=img_path,
                    img_id=name,
                    height=height,
                    width=width,
                    text=classes,
                    count_label=label,
                    gt_count=len(points),
                    instances=[
                        dict(bbox=[x, y, x, y], bbox_label=label,
                             ignore_flag=0) for x, y in points.tolist()
                    ]))
        return data_list
