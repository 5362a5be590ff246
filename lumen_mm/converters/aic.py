"""AI Challenger keypoints -> the COCO keypoint layout mmpose reads.

AI Challenger (Wu et al., 2017) releases one JSON list per split::

    [{"image_id": "<name without .jpg>",
      "human_annotations": {"human1": [x1, y1, x2, y2], ...},
      "keypoint_annotations": {"human1": [x, y, v] * 14, ...}}, ...]

with v = 1 visible, 2 occluded, 3 not labelled, and no image sizes. The
COCO layout has per-person ``bbox`` (x, y, w, h), ``keypoints`` with v = 2
visible, 1 occluded, 0 not labelled (x = y = 0), ``num_keypoints`` and image
``width``/``height`` (read here from the image headers). The result loads
with mmpose's ``AicDataset`` (its ``CocoDataset`` with AIC's 14 keypoints).
"""
import json
import os
import os.path as osp
from typing import Optional

from PIL import Image

AIC_KEYPOINTS = ('right_shoulder', 'right_elbow', 'right_wrist',
                 'left_shoulder', 'left_elbow', 'left_wrist', 'right_hip',
                 'right_knee', 'right_ankle', 'left_hip', 'left_knee',
                 'left_ankle', 'head_top', 'neck')
# AIC visibility -> COCO visibility
_VISIBILITY = {1: 2, 2: 1, 3: 0}


def convert_aic_to_coco(ann_file: str,
                        image_dir: str,
                        out_file: Optional[str] = None) -> dict:
    """Convert one AIC keypoint annotation file; write it to ``out_file``
    when given. Returns the COCO dict."""
    with open(ann_file) as f:
        items = json.load(f)
    if not isinstance(items, list) or (items and 'keypoint_annotations'
                                       not in items[0]):
        raise ValueError(
            f'{ann_file} is not an AI Challenger keypoint file: expected a '
            'list of {"image_id", "human_annotations", '
            '"keypoint_annotations"} items.')
    images, annotations = [], []
    for image_index, item in enumerate(items, 1):
        file_name = f'{item["image_id"]}.jpg'
        path = osp.join(image_dir, file_name)
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'{path} (image {item["image_id"]!r} of {ann_file}) does not '
                'exist: pass the folder of this split\'s images as image_dir.')
        with Image.open(path) as img:
            width, height = img.size
        images.append(dict(id=image_index, file_name=file_name, width=width,
                           height=height))
        for human, box in sorted(item['human_annotations'].items()):
            points = item['keypoint_annotations'].get(human)
            if points is None or len(points) != 3 * len(AIC_KEYPOINTS):
                raise ValueError(
                    f'{human} of image {item["image_id"]!r} has no 14 x 3 '
                    'keypoint values.')
            keypoints = []
            for x, y, v in zip(points[::3], points[1::3], points[2::3]):
                if v not in _VISIBILITY:
                    raise ValueError(
                        f'Visibility {v} of {human} in image '
                        f'{item["image_id"]!r}: AIC uses 1, 2 or 3.')
                v = _VISIBILITY[v]
                keypoints += [x, y, v] if v else [0, 0, 0]
            x1, y1, x2, y2 = box
            annotations.append(
                dict(id=len(annotations) + 1, image_id=image_index,
                     category_id=1, iscrowd=0,
                     bbox=[x1, y1, x2 - x1, y2 - y1],
                     area=float((x2 - x1) * (y2 - y1)),
                     keypoints=keypoints,
                     num_keypoints=sum(v > 0 for v in keypoints[2::3])))
    coco = dict(
        images=images,
        annotations=annotations,
        categories=[
            dict(id=1, name='person', supercategory='person',
                 keypoints=list(AIC_KEYPOINTS))
        ])
    if out_file is not None:
        os.makedirs(osp.dirname(osp.abspath(out_file)), exist_ok=True)
        with open(out_file, 'w') as f:
            json.dump(coco, f)
    return coco
