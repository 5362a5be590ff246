"""Writing Lumen-Shapes: the shapes images with their COCO instances and
refer-API refs, then the pose, counting and question parts, then a tokenizer
for tiny LMMs (layout in :mod:`lumen_mm.datasets.shapes`).
"""
import json
import os
import os.path as osp
import pickle
from dataclasses import dataclass
from typing import Dict, List, Tuple, Union

import numpy as np
from PIL import Image
from tqdm import tqdm

from lumen_mm.models.backbones.tokenizer import train_tokenizer
from ..vqa import strip_image_mark
from .counting import write_count_split
from .objects import (_ANN_ID_STRIDE, _SPLIT_ID_STRIDE, COLORS,
                      SHAPE_CLASSES, SPLITS, ShapeObject, ShapesConfig,
                      _background, _coco, _paint, _place_objects)
from .pose import KEYPOINT_NAMES, write_pose_split
from .questions import write_questions
from .referring import _sample_refs


@dataclass
class ShapesSample:
    """One generated image with its objects (in drawing order) and refs."""
    image: np.ndarray  # (H, W, 3) uint8 RGB
    objects: List[ShapeObject]
    # (index into objects, sentences); distinct objects.
    refs: List[Tuple[int, List[str]]]


def generate_sample(rng: np.random.Generator,
                    cfg: ShapesConfig = ShapesConfig()) -> ShapesSample:
    """Draw one image, its objects and its referring expressions."""
    canvas = _background(rng, cfg.image_size)
    placed = _place_objects(rng, cfg)
    objects = []
    hidden = np.zeros((cfg.image_size, cfg.image_size), dtype=bool)
    for p in reversed(placed):
        objects.append(ShapeObject(p.shape, p.color, p.size, p.mask & ~hidden))
        hidden |= p.mask
    objects.reverse()
    image = _paint(rng, canvas, [(p.mask, p.color) for p in placed],
                   cfg.color_jitter)
    return ShapesSample(image, objects, _sample_refs(rng, objects, cfg))


def _ref(split: str, file_name: str, image_id: int, ann: dict,
         sentences: List[str]) -> dict:
    """One ref in the refer-API format that ``RefCocoDataset`` reads."""
    ref_id = ann['id']
    sents = [dict(sent=s, raw=s, tokens=s.split(), sent_id=ref_id * 10 + j)
             for j, s in enumerate(sentences)]
    return dict(
        ref_id=ref_id,
        ann_id=ann['id'],
        image_id=image_id,
        split=split,
        sentences=sents,
        sent_ids=[s['sent_id'] for s in sents],
        category_id=ann['category_id'],
        file_name=file_name)


def _dump_json(obj: Union[dict, list], path: str) -> None:
    # Same bytes as json.dump, which runs the slow pure-Python encoder.
    with open(path, 'w') as f:
        f.write(json.dumps(obj))


def _write_split(out_dir: str, split: str, num_images: int, seed: int,
                 cfg: ShapesConfig, bar: tqdm
                 ) -> Tuple[List[dict], List[dict], List[dict]]:
    """Write the images of one split; return its COCO images, annotations
    and refs."""
    split_index = SPLITS.index(split)
    os.makedirs(osp.join(out_dir, split), exist_ok=True)
    images, anns, refs = [], [], []
    for i in range(num_images):
        sample = generate_sample(
            np.random.default_rng([seed, split_index, i]), cfg)
        image_id = split_index * _SPLIT_ID_STRIDE + i + 1
        file_name = f'{i:06d}.png'
        Image.fromarray(sample.image).save(osp.join(out_dir, split, file_name))
        images.append(dict(id=image_id, file_name=file_name,
                           height=cfg.image_size, width=cfg.image_size))
        image_anns = [
            obj.to_coco(image_id * _ANN_ID_STRIDE + k + 1, image_id)
            for k, obj in enumerate(sample.objects)
        ]
        anns += image_anns
        refs += [
            _ref(split, f'{split}/{file_name}', image_id, image_anns[index],
                 sentences) for index, sentences in sample.refs
        ]
        bar.update()
    return images, anns, refs


def make_shapes(out_dir: str,
                seed: int = 0,
                num_train: int = 2000,
                num_val: int = 200,
                cfg: ShapesConfig = ShapesConfig(),
                progress: bool = True,
                num_pose_train: int = 1000,
                num_pose_val: int = 100,
                num_count_train: int = 1000,
                num_count_val: int = 100) -> Dict[str, Dict[str, int]]:
    """Generate Lumen-Shapes, all parts, into ``out_dir`` (layout in
    :mod:`lumen_mm.datasets.shapes`).

    Returns per split the number of images, objects, refs, sentences,
    questions, pose images, people, counting images and counted objects.
    """
    split_sizes = dict(train=num_train, val=num_val)
    pose_sizes = dict(train=num_pose_train, val=num_pose_val)
    count_sizes = dict(train=num_count_train, val=num_count_val)
    for name, sizes in (('', split_sizes), ('pose ', pose_sizes),
                        ('count ', count_sizes)):
        if not all(0 <= n < _SPLIT_ID_STRIDE for n in sizes.values()):
            raise ValueError(f'{name}split sizes must be in [0, '
                             f'{_SPLIT_ID_STRIDE}), got {sizes}')
    ann_dir = osp.join(out_dir, 'annotations')
    os.makedirs(ann_dir, exist_ok=True)

    stats = {}
    all_images, all_anns, all_refs, train_questions = [], [], [], []
    total = sum(sum(s.values()) for s in (split_sizes, pose_sizes,
                                          count_sizes))
    with tqdm(total=total, desc='Lumen-Shapes', disable=not progress) as bar:
        for split in SPLITS:
            images, anns, refs = _write_split(out_dir, split,
                                              split_sizes[split], seed, cfg,
                                              bar)
            coco = _coco(images, anns)
            _dump_json(coco, osp.join(ann_dir, f'instances_{split}.json'))
            questions = write_questions(split, coco, seed)
            _dump_json(questions, osp.join(ann_dir, f'qa_{split}.json'))
            if split == 'train':
                train_questions = questions
            all_images += [dict(img, file_name=f'{split}/{img["file_name"]}')
                           for img in images]
            all_anns += anns
            all_refs += refs
            stats[split] = dict(
                images=len(images),
                objects=len(anns),
                refs=len(refs),
                sentences=sum(len(ref['sentences']) for ref in refs),
                questions=len(questions))
        for split in SPLITS:
            pose = write_pose_split(out_dir, split, pose_sizes[split], seed,
                                    cfg, bar)
            _dump_json(pose,
                       osp.join(ann_dir, f'person_keypoints_{split}.json'))
            count = write_count_split(out_dir, split, count_sizes[split],
                                      seed, cfg, bar)
            _dump_json(count, osp.join(ann_dir, f'count_{split}.json'))
            stats[split].update({
                'pose images': len(pose['images']),
                'people': len(pose['annotations']),
                'count images': len(count['images']),
                'counted objects': sum(
                    img['count'] for img in count['images'])
            })
    _dump_json(_coco(all_images, all_anns),
               osp.join(ann_dir, 'instances_refs.json'))
    with open(osp.join(ann_dir, 'refs_shapes.p'), 'wb') as f:
        pickle.dump(all_refs, f, protocol=4)
    # Tiny models have no pretrained tokenizer: train one on every text the
    # prompts hold. Without the keypoint names and the questions, " left
    # hand" was split into ' left', ' ', 'ha', 'n', 'd'. The names get the
    # leading space they have after "location of" in the prompts.
    texts = [' '.join(SHAPE_CLASSES), ' '.join(COLORS),
             ''.join(' ' + name.replace('_', ' ') for name in KEYPOINT_NAMES)]
    texts += [s['raw'] for ref in all_refs for s in ref['sentences']]
    texts += [strip_image_mark(turn['value'])
              for entry in train_questions
              for turn in entry['conversations']]
    train_tokenizer(texts, osp.join(out_dir, 'tokenizer'))
    return stats
