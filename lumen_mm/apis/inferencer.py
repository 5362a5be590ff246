"""Run Lumen on pictures: ``LumenInferencer(config, checkpoint)(images, ...)``.

Images of any size, aspect ratio and colour mode go through the config's
test-time transforms (mmdet's ``Resize`` with ``keep_ratio`` and ``Pad``), the
model's data preprocessor and ``Lumen.predict``; the returned
``DetDataSample`` s hold their boxes, masks and keypoints in the frame of the
image that was passed in.
"""
import copy
import os.path as osp
from pathlib import Path
from typing import Callable, List, Optional, Sequence, Tuple, Union

import mmcv
import numpy as np
import torch
from mmcv.transforms import Compose
from mmdet.registry import MODELS
from mmdet.structures import DetDataSample
from mmdet.structures.bbox import HorizontalBoxes
from mmengine.config import Config, ConfigDict
from mmengine.dataset import pseudo_collate
from mmengine.registry import init_default_scope
from mmengine.structures import InstanceData
from mmengine.utils import ProgressBar
from PIL import Image, ImageOps

from lumen_mm.datasets.loading import decode_failure
from lumen_mm.datasets.prompts import keypoint_prompt
from lumen_mm.engine.checkpoint import load_trainable_checkpoint
from lumen_mm.tasks import TASKS

ImageType = Union[str, Path, np.ndarray, Image.Image]

# What each task takes from the call: names in ``classes`` (one prompt per
# name; keypoint names for pose) or one sentence or question in ``text``.
TASK_PROMPTS = {
    name: 'text' if task.prompts in ('text', 'conversation') else 'classes'
    for name, task in TASKS.items() if task.prompts != 'instruction'
}


def _replaced(transform: dict) -> bool:
    """Test transforms the inferencer does itself: loading (it decodes the
    images), prompts (from the call) and packing."""
    name = str(transform['type'])
    return 'Load' in name or name.endswith('Prompts') or name.startswith(
        'Pack')


PACK = dict(type='PackLumenInputs',
            extra_meta_keys=('pad_shape', 'return_heatmaps'))


def _first(node, match: Callable[[dict], bool]) -> Optional[dict]:
    """The first dict of a config tree (depth first) that ``match`` takes."""
    if isinstance(node, dict):
        if match(node):
            return node
        node = list(node.values())
    for child in node if isinstance(node, (list, tuple)) else []:
        found = _first(child, match)
        if found is not None:
            return found
    return None


def _find_person_crop(cfg: Config) -> list:
    """mmpose's top-down crop of the config's pose data
    (``GetBBoxCenterScale``, ``TopdownAffine``); for a config without pose
    data, that crop (1.25 x the box, mmpose's default) at the aligner's input
    size."""
    def is_crop(t):
        return isinstance(t, dict) and str(t.get('type')).endswith(
            ('GetBBoxCenterScale', 'TopdownAffine'))

    found = _first(cfg.to_dict(),
                   lambda d: any(is_crop(t) for t in d.get('pipeline') or []))
    if found:
        return [t for t in found['pipeline'] if is_crop(t)]
    size = cfg.model.get('backbone', {}).get('aligner_image_size', 128)
    return [
        dict(type='mmpose.GetBBoxCenterScale', padding=1.25),
        dict(type='mmpose.TopdownAffine', input_size=(size, size))
    ]


def config_keypoint_names(cfg: Config) -> Optional[List[str]]:
    """The keypoint names of the config's ``LumenPosePrompts``, if any."""
    found = _first(cfg.to_dict(),
                   lambda d: d.get('type') == 'LumenPosePrompts')
    return list(found['keypoint_names']) if found else None


def config_pose_meta(cfg: Config) -> Optional[dict]:
    """mmpose's parsed metainfo (keypoints, skeleton, colours) of the
    config's pose dataset, if any."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    found = _first(
        cfg.to_dict(), lambda d: isinstance(d.get('metainfo'), dict) and
        ('from_file' in d['metainfo'] or 'keypoint_info' in d['metainfo']))
    return parse_pose_metainfo(dict(found['metainfo'])) if found else None


def coco_keypoint_names() -> List[str]:
    """The 17 COCO keypoints (mmpose's metainfo) as the paper's configs
    ask them: 'left eye'."""
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    meta = parse_pose_metainfo(
        dict(from_file='configs/_base_/datasets/coco.py'))
    return [
        meta['keypoint_id2name'][i].replace('_', ' ')
        for i in range(meta['num_keypoints'])
    ]


def load_image(image: ImageType) -> np.ndarray:
    """Decode one image to an HxWx3 uint8 BGR array (mmcv's convention).

    * a path: decoded by mmcv (OpenCV), EXIF orientation applied, grey and
      palette images expanded to 3 channels, alpha dropped;
    * a PIL image in any mode (RGB, L, RGBA, P, CMYK...): EXIF orientation
      applied (``ImageOps.exif_transpose``), converted to RGB, then BGR;
      16-bit grey (I;16, or I holding 0-65535) as below; 32-bit float
      (mode F) is refused (its value range is unknown);
    * a numpy array: HxW (grey), HxWx1, HxWx3 (**BGR**, as ``mmcv.imread``
      returns; flip an RGB array with ``img[..., ::-1]``) or HxWx4 (BGRA,
      alpha dropped), dtype uint8 or uint16.

    16-bit values become 8-bit as OpenCV decodes a 16-bit file by path
    (``value >> 8``), so a 16-bit picture gives the same pixels however it
    is passed, and as in the training pipelines (mmcv decodes with OpenCV).
    """
    if isinstance(image, (str, Path)):
        path = str(image)
        if not osp.isfile(path):
            raise FileNotFoundError(f'Image file not found: {path!r}.')
        with open(path, 'rb') as f:
            content = f.read()
        try:
            img = mmcv.imfrombytes(content, flag='color', channel_order='bgr')
        except Exception as e:  # OpenCV's errors do not name the file
            raise ValueError(decode_failure(path, e)) from e
        if img is None:
            raise ValueError(f'Cannot decode {path!r} as an image: give a '
                             'JPEG, PNG, BMP, TIFF or WebP file.')
        return img
    if isinstance(image, np.ndarray):
        return _array_to_bgr(image)
    if isinstance(image, Image.Image):
        return _pil_to_bgr(ImageOps.exif_transpose(image))
    raise TypeError(f'Unsupported image type {type(image).__name__}: give a '
                    'file path, a numpy array (HxW or HxWxC BGR) or a PIL '
                    'image.')


def _pil_to_bgr(image: Image.Image) -> np.ndarray:
    """A PIL image of any mode as HxWx3 uint8 BGR (see :func:`load_image`).

    PIL's ``convert('RGB')`` clips 16- and 32-bit values to 255 (a 16-bit
    grey picture turns white) and a 0-1 float image to black, so those
    modes are scaled here or refused.
    """
    if image.mode == 'F':
        raise ValueError(
            "PIL image of mode 'F' (32-bit float): its value range is "
            'unknown, so it cannot be made 8-bit safely. Convert it first, '
            'e.g. Image.fromarray((np.asarray(img) * 255).clip(0, 255)'
            ".astype(np.uint8)) for 0-1 values, or .convert('L') for "
            '0-255 values.')
    if image.mode.startswith('I'):  # I;16, I;16B, I (32-bit int)
        values = np.asarray(image)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(
                f"PIL image of mode {image.mode!r} holds values "
                f'{values.min()}..{values.max()}, outside 16 bits: scale it '
                'to 0-255 and pass Image.fromarray(array.astype(np.uint8)).')
        return _array_to_bgr(values.astype(np.uint16))
    rgb = np.asarray(image.convert('RGB'))
    return np.ascontiguousarray(rgb[..., ::-1])


def _array_to_bgr(img: np.ndarray) -> np.ndarray:
    if img.dtype == np.uint16:  # as OpenCV makes a 16-bit file 8-bit
        img = (img >> 8).astype(np.uint8)
    if img.dtype != np.uint8:
        raise ValueError(
            f'Image arrays must be uint8 (or uint16), got {img.dtype}: '
            'convert with `(img * 255).clip(0, 255).astype(np.uint8)` for 0-1 '
            'floats.')
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[..., 0]
    if img.ndim == 2:
        return mmcv.gray2bgr(img)
    if img.ndim == 3 and img.shape[2] == 3:
        return np.ascontiguousarray(img)
    if img.ndim == 3 and img.shape[2] == 4:
        return np.ascontiguousarray(img[..., :3])
    raise ValueError(f'Image array of shape {img.shape}: expected HxW, '
                     'HxWx1, HxWx3 (BGR) or HxWx4 (BGRA).')


def _item_error(error: Exception, index: int, images: list,
                results: list) -> Exception:
    """``error`` of one image of a list, saying which: the same type (else
    ValueError) with ``index`` and the ``results`` of the images before
    it, so that nothing computed is lost."""
    image = images[index]
    what = (repr(str(image)) if isinstance(image, (str, Path)) else
            f'a {type(image).__name__}')
    message = (f'Image {index} of {len(images)} ({what}): {error} The '
               f'{len(results)} images before it ran: their results are '
               "in this error's `results`; fix or remove this one and call "
               'again with the rest.')
    try:
        new = type(error)(message)
    except Exception:  # an exception type with other arguments
        new = ValueError(message)
    new.index, new.results = index, list(results)
    return new


def _check_person_boxes(boxes: list, shape: Tuple[int, int],
                        index: int) -> None:
    """Refuse person boxes that do not overlap the image: their keypoints
    would all be clamped to its border."""
    h, w = shape
    for box in boxes:
        if box is None:
            continue
        x1, y1, x2, y2 = box.tolist()
        if x2 <= 0 or y2 <= 0 or x1 >= w or y1 >= h:
            raise ValueError(
                f'Person box {[x1, y1, x2, y2]} of image {index} lies '
                f'outside the image ({w} x {h} pixels, x in [0, {w}], y in '
                f'[0, {h}]): give boxes in the image\'s pixels.')


def _find_test_pipeline(cfg: Config) -> Optional[list]:
    """The config's ``test_pipeline``, or the first test dataset pipeline
    that resizes whole images (not a top-down pose crop)."""
    if cfg.get('test_pipeline'):
        return cfg.test_pipeline
    found = _first(
        cfg.to_dict().get('test_dataloader', {}).get('dataset'),
        lambda d: any(
            isinstance(t, dict) and t.get('type') == 'Resize'
            for t in d.get('pipeline') or []))
    return found['pipeline'] if found else None


class LumenInferencer:
    """Build a Lumen from a config (and checkpoint) and ask it about images.

    mmengine's ``BaseInferencer`` returns dicts of visualisations and routes
    keyword arguments to fixed stages; Lumen's prompts belong to each call, so
    this small class keeps mmdet's pieces (registry, ``dataset_meta`` from
    the checkpoint as mmdet's ``DetInferencer``, the test transforms,
    ``test_step``) and returns ``DetDataSample`` s. Checkpoints load as in
    ``tools/test.py`` (:func:`load_trainable_checkpoint`).

    Args:
        config: path of an mmengine config, or a ``Config``.
        checkpoint: weights to load (an mmengine checkpoint, full or
            trainable-only); ``None`` keeps the weights the config builds
            (pretrained files, or random for the tiny models).
        device: ``'cpu'``, ``'cuda'``, ``'cuda:1'``...
        show_progress: show a progress bar over many images.

    Attributes:
        dataset_meta: the checkpoint's ``meta.dataset_meta`` (class names).
        pose_meta: mmpose's metainfo of the config's pose dataset (keypoint
            names, skeleton) for drawing, or None.
    """

    def __init__(self,
                 config: Union[str, Path, Config],
                 checkpoint: Optional[str] = None,
                 device: str = 'cpu',
                 show_progress: bool = True) -> None:
        if isinstance(config, (str, Path)):
            if not osp.isfile(str(config)):
                raise FileNotFoundError(
                    f'Config file not found: {str(config)!r}; pass a .py '
                    'config such as configs/lumen/shapes/'
                    'lumen_tiny_shapes_det_ground.py.')
            cfg = Config.fromfile(str(config))
        elif isinstance(config, (Config, ConfigDict)):
            cfg = copy.deepcopy(config)
        else:
            raise TypeError('config must be a config file path or an mmengine '
                            f'Config, got {type(config).__name__}.')
        init_default_scope(cfg.get('default_scope', 'mmdet'))
        self.cfg = cfg
        self.model = MODELS.build(cfg.model)
        self.dataset_meta: dict = {}
        if checkpoint is not None:
            # weights_only loading with mmengine's types allowed; a
            # trainable-only checkpoint (LoRA, aligner...) is completed by
            # the pretrained weights the model was built with
            ckpt = load_trainable_checkpoint(
                self.model, checkpoint, strict=cfg.get('strict_load', True))
            self.dataset_meta = {
                k.lower(): v
                for k, v in ckpt.get('meta', {}).get('dataset_meta',
                                                      {}).items()
            }
        self.model.dataset_meta = self.dataset_meta
        self.pose_meta = config_pose_meta(cfg)
        self.model.to(device).eval()
        self.pipeline = self._build_pipeline(cfg)
        # pose is top-down: each person box is cropped as in training
        self.person_crop = Compose(_find_person_crop(cfg))
        self.pack_person = Compose(
            [PACK])
        self.show_progress = show_progress

    @staticmethod
    def _build_pipeline(cfg: Config) -> Compose:
        """The config's whole-image test transforms between decoding and
        packing; for configs without one (top-down pose tests), Resize with
        ``keep_ratio`` and Pad to the aligner's input size."""
        pipeline = _find_test_pipeline(cfg)
        if pipeline is None:
            size = cfg.model.get('backbone', {}).get('aligner_image_size')
            if size is None:
                raise ValueError(
                    'The config has no whole-image test pipeline and no '
                    'model.backbone.aligner_image_size: add `test_pipeline` '
                    'with Resize(keep_ratio=True) and Pad.')
            pipeline = [
                dict(type='Resize', scale=(size, size), keep_ratio=True),
                dict(type='Pad', size=(size, size))
            ]
        # mmdet's Resize makes a 1 x 2000 image's short side 0 px
        kept = [
            dict(t, type='LumenResize') if t['type'] in (
                'Resize', 'mmdet.Resize') else t
            for t in pipeline if not _replaced(t)
        ]
        return Compose(kept +
                       [PACK])

    # -- prompts --------------------------------------------------------------
    def _prompts(self, instruction: Optional[str], task: Optional[str],
                 classes: Optional[Sequence[str]],
                 text: Optional[str]) -> dict:
        """``task``, ``prompts`` and ``prompt_labels`` of every image."""
        if instruction is not None:
            if task is not None or classes is not None or text is not None:
                raise ValueError(
                    'Give either a free-form `instruction` or a `task` with '
                    '`classes`/`text`, not both.')
            if not str(instruction).strip():
                raise ValueError('The instruction is empty.')
            return dict(
                task='instruction', prompts=[str(instruction)],
                prompt_labels=[0])
        if task is None:
            raise ValueError(
                'Nothing to do: give an `instruction` ("find the dogs"), or '
                f'a `task` in {tuple(TASK_PROMPTS)} with `classes` or `text`.')
        if task not in TASK_PROMPTS:
            raise ValueError(f'Unknown task {task!r}; choose one of '
                             f'{tuple(TASK_PROMPTS)}, or give an '
                             '`instruction`.')
        if TASK_PROMPTS[task] == 'text':
            if classes is not None:
                raise ValueError(f'Task {task!r} takes a sentence in `text`, '
                                 'not `classes`.')
            if text is None or not str(text).strip():
                raise ValueError(f'Task {task!r} needs `text`: the referring '
                                 'sentence or the question.')
            return dict(task=task, prompts=[str(text)], prompt_labels=[0])
        if text is not None:
            raise ValueError(f'Task {task!r} takes names in `classes`, not '
                             '`text`.')
        if classes is None:
            classes = self._default_classes(task)
        if isinstance(classes, str):
            classes = [classes]
        wrong = [c for c in classes if not isinstance(c, str)]
        if wrong:  # str(None) would look for the word "None"
            raise TypeError(
                f'`classes` must be names (strings); got {wrong[0]!r} of '
                f'type {type(wrong[0]).__name__}. Pass e.g. '
                "classes=['cat', 'dog'].")
        if task == 'pose':  # asked as the training prompts were
            classes = [keypoint_prompt(c) for c in classes]
        if not classes or not all(c.strip() for c in classes):
            raise ValueError(f'Task {task!r} needs a non-empty list of '
                             '`classes` (names to look for), without empty '
                             'names.')
        return dict(
            task=task,
            prompts=classes,
            prompt_labels=list(range(len(classes))))

    def _default_classes(self, task: str) -> List[str]:
        if task == 'pose':
            return config_keypoint_names(self.cfg) or coco_keypoint_names()
        classes = self.dataset_meta.get('classes')
        if not classes:
            raise ValueError(
                f'Task {task!r} needs `classes`: the checkpoint has no class '
                'names (meta.dataset_meta.classes) to default to.')
        return list(classes)

    # -- inference ------------------------------------------------------------
    def __call__(self,
                 images: Union[ImageType, Sequence[ImageType]],
                 instruction: Optional[str] = None,
                 task: Optional[str] = None,
                 classes: Optional[Sequence[str]] = None,
                 text: Optional[str] = None,
                 person_bboxes: Optional[Sequence] = None,
                 return_heatmaps: bool = False,
                 batch_size: int = 1
                 ) -> Union[DetDataSample, List[DetDataSample]]:
        """Ask every image the same instruction, or task with its prompts.

        Args:
            images: one image or a list (paths, numpy arrays, PIL images; see
                :func:`load_image`).
            instruction: free-form request; the model picks the task.
            task: one of ``TASK_PROMPTS``, with ``classes`` (det, seg, count,
                pose: names to find; default: the checkpoint's classes; for
                pose the config's keypoint names, else COCO's) or ``text``
                (ground, refseg: a referring sentence; vqa: a question).
            person_bboxes: pose only: the people to find keypoints on, as
                (N, 4) x1, y1, x2, y2 boxes in the image's pixels (a list of
                them for a list of images); each is cropped as in training
                (top-down), and an image's people run as one batch.
                Default: the whole image is one person.
            return_heatmaps: keep the (P, h, w) heatmaps in
                ``sample.heatmaps`` (heatmap grid of the padded input; not
                for pose, whose heatmaps lie in each person's crop).
            batch_size: images per forward pass.

        Returns:
            ``DetDataSample`` (a list for a list of images) with
            ``pred_instances`` in the original image frame, and
            ``pred_count`` / ``pred_text`` / ``pred_task`` by task.
        """
        if batch_size < 1:
            raise ValueError(f'batch_size must be >= 1, got {batch_size}.')
        prompts = self._prompts(instruction, task, classes, text)
        single = not isinstance(images, (list, tuple))
        images = [images] if single else list(images)
        if not images:
            raise ValueError('No images given.')
        if task == 'pose':
            return self._pose(images, prompts, person_bboxes, single)
        if person_bboxes is not None:
            raise ValueError('`person_bboxes` are the people of the pose '
                             f'task; task {task!r} takes none.')
        progress = (
            ProgressBar(len(images))
            if self.show_progress and len(images) > 1 else None)
        results = []
        for start in range(0, len(images), batch_size):
            batch = []
            for i, image in enumerate(images[start:start + batch_size]):
                try:
                    batch.append(
                        self._prepare(image, start + i, prompts,
                                      return_heatmaps))
                except Exception as e:
                    if single:
                        raise
                    raise _item_error(e, start + i, images, results) from e
            with torch.no_grad():
                samples = self.model.test_step(pseudo_collate(batch))
            for sample in samples:
                results.append(self._to_image_frame(sample))
                if progress is not None:
                    progress.update()
        if progress is not None:
            progress.file.write('\n')  # the bar ends without a newline
        return results[0] if single else results

    def _prepare(self, image: ImageType, index: int, prompts: dict,
                 return_heatmaps: bool) -> dict:
        img = load_image(image)
        if min(img.shape[:2]) < 1:
            raise ValueError(f'Image {index} is empty: shape {img.shape}.')
        results = dict(
            img=img,
            img_path=str(image) if isinstance(image, (str, Path)) else None,
            img_id=index,
            ori_shape=img.shape[:2],
            img_shape=img.shape[:2],
            return_heatmaps=return_heatmaps,
            **copy.deepcopy(prompts))
        return self.pipeline(results)

    def _pose(self, images: list, prompts: dict, person_bboxes,
              single: bool) -> Union[DetDataSample, List[DetDataSample]]:
        """Top-down pose: every person box of every image is cropped, run,
        and its keypoints mapped back; one sample per image holds all its
        people."""
        boxes = self._person_boxes(images, person_bboxes, single)
        results = []
        for index, (image, image_boxes) in enumerate(zip(images, boxes)):
            try:
                img = load_image(image)
                _check_person_boxes(image_boxes, img.shape[:2], index)
            except Exception as e:
                if single:
                    raise
                raise _item_error(e, index, images, results) from e
            crops = [self._crop_person(img, index, box, prompts)
                     for box in image_boxes]
            with torch.no_grad():
                people = self.model.test_step(pseudo_collate(crops))
            sample = people[0].cpu()
            sample.set_metainfo(
                dict(ori_shape=img.shape[:2], img_shape=img.shape[:2]))
            sample.pred_instances = InstanceData.cat(
                [p.pred_instances.cpu() for p in people])
            results.append(self._to_image_frame(sample))
        return results[0] if single else results

    @staticmethod
    def _person_boxes(images: list, person_bboxes, single: bool) -> list:
        """(N, 4) float boxes per image; the whole image when none given."""
        if person_bboxes is None:
            return [[None]] * len(images)
        per_image = [person_bboxes] if single else list(person_bboxes)
        if len(per_image) != len(images):
            raise ValueError(
                f'{len(images)} images but person boxes for '
                f'{len(per_image)}: give one (N, 4) array per image.')
        boxes = []
        for given in per_image:
            b = np.asarray(given, np.float32)
            if not np.isfinite(b).all():
                raise ValueError(
                    f'Person boxes {b.tolist()} are not all finite numbers: '
                    'give x1, y1, x2, y2 in the image\'s pixels (no inf or '
                    'NaN).')
            if b.size == 0 or b.size % 4 or not (
                    b.reshape(-1, 4)[:, 2:] > b.reshape(-1, 4)[:, :2]).all():
                raise ValueError(
                    f'Person boxes {b.tolist()}: give at least one x1, y1, '
                    'x2, y2 box per image, with x2 > x1 and y2 > y1.')
            boxes.append(b.reshape(-1, 4))
        return boxes

    def _crop_person(self, img: np.ndarray, index: int,
                     box: Optional[np.ndarray], prompts: dict) -> dict:
        h, w = img.shape[:2]
        if box is None:
            box = np.array([0, 0, w, h], np.float32)
        results = self.person_crop(
            dict(img=img, img_id=index, img_path=None, ori_shape=(h, w),
                 bbox=box[None], person_bbox=box,
                 **copy.deepcopy(prompts)))
        results['img_shape'] = results['img'].shape[:2]
        return self.pack_person(results)

    @staticmethod
    def _to_image_frame(sample: DetDataSample) -> DetDataSample:
        """Clip boxes and keypoints to the original image (peaks near the
        border with wide size maps reach past it, and peaks in the padding
        lie outside it); move to CPU."""
        sample = sample.cpu()
        preds = sample.get('pred_instances')
        if preds is None:
            return sample
        h, w = sample.ori_shape[:2]
        if 'bboxes' in preds:
            boxes = HorizontalBoxes(preds.bboxes.float())
            boxes.clip_((h, w))
            preds.bboxes = boxes.tensor
        if 'keypoints' in preds:
            points = torch.as_tensor(preds.keypoints).float()
            points[..., 0].clamp_(0, w)
            points[..., 1].clamp_(0, h)
            preds.keypoints = points
        return sample
