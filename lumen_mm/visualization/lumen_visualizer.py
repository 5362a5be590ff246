"""Draw Lumen's answers: boxes, masks, keypoints with skeleton, heatmaps."""
import os.path as osp
import textwrap
from functools import lru_cache
from typing import Dict, List, Optional, Sequence, Tuple

import cv2
import mmcv
import numpy as np
import torch
import torch.nn.functional as F
from mmdet.engine.hooks import DetVisualizationHook
from mmdet.registry import HOOKS, VISUALIZERS
from mmdet.structures import DetDataSample
from mmdet.visualization import DetLocalVisualizer
from mmengine.fileio import get
from mmengine.structures import InstanceData
from torch import Tensor

from lumen_mm.tasks import decode_masks


@lru_cache(maxsize=1)
def _coco_pose_meta() -> dict:
    from mmpose.datasets.datasets.utils import parse_pose_metainfo
    return parse_pose_metainfo(
        dict(from_file='configs/_base_/datasets/coco.py'))


def escape_mathtext(text: str) -> str:
    """``text`` drawn as written: matplotlib reads text between two ``$`` as
    mathtext and fails on what it cannot parse (a class named '$\\foo$')."""
    return str(text).replace('$', r'\$')


def downscale_for_drawing(image: np.ndarray, sample: DetDataSample,
                          max_side: int
                          ) -> Tuple[np.ndarray, DetDataSample, float]:
    """``image`` and a copy of ``sample``'s predictions scaled so that the
    image's long side is at most ``max_side``, and the scale (1.0: as they
    were).

    matplotlib draws at the image's size in RGBA buffers: a 12000-px image
    took 8.7 GB. Boxes and keypoints are scaled, masks resized by mmdet's
    ``BitmapMasks.resize`` (nearest), one at a time.
    """
    if max_side < 1:
        raise ValueError(f'max_side must be >= 1 pixel, got {max_side}.')
    h, w = image.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return image, sample, 1.0
    from mmdet.structures.mask import BitmapMasks
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    small = mmcv.imresize(image, size[::-1], interpolation='area')
    sample = sample.clone()  # shallow: new instances below
    sample.set_metainfo(dict(ori_shape=size, img_shape=size))
    preds = sample.get('pred_instances')
    if preds is not None:
        preds = sample.pred_instances = preds.clone()
        factor = (size[1] / w, size[0] / h)
        if 'bboxes' in preds:
            preds.bboxes = torch.as_tensor(preds.bboxes).float() * \
                preds.bboxes.new_tensor(factor * 2).float()
        if 'keypoints' in preds:
            preds.keypoints = torch.as_tensor(preds.keypoints).float() * \
                torch.tensor(factor)
        if 'masks' in preds:  # one full-size mask at a time
            masks = preds.masks
            preds.masks = torch.zeros((len(masks), *size), dtype=torch.bool)
            for i in range(len(masks)):
                full = decode_masks(masks[i:i + 1], (h, w)).numpy()
                preds.masks[i] = torch.from_numpy(
                    BitmapMasks(full.astype(np.uint8), h,
                                w).resize(size).masks[0].astype(bool))
    return small, sample, scale


def _words(name: str) -> str:
    return name.replace('_', ' ').strip().lower()


def skeleton_meta(keypoint_names: Sequence[str],
                  pose_meta: Optional[dict] = None) -> dict:
    """mmpose drawing meta for the asked keypoints: the colours of
    ``pose_meta`` (mmpose's parsed dataset metainfo; default COCO's) and its
    skeleton links between them. A keypoint it does not name is grey and
    unlinked. Names match with '_' or ' ' ('left_eye', 'left eye')."""
    pose_meta = pose_meta or _coco_pose_meta()
    known = {_words(n): i for i, n in pose_meta['keypoint_id2name'].items()}
    ids = [known.get(_words(n)) for n in keypoint_names]
    index = {cid: k for k, cid in enumerate(ids) if cid is not None}
    links, link_colors = [], []
    for (a, b), color in zip(pose_meta['skeleton_links'],
                             pose_meta['skeleton_link_colors']):
        if a in index and b in index:
            links.append((index[a], index[b]))
            link_colors.append(color)
    kpt_colors = np.array([
        pose_meta['keypoint_colors'][cid] if cid is not None else
        (128, 128, 128) for cid in ids
    ])
    return dict(
        keypoint_colors=kpt_colors,
        skeleton_links=links,
        skeleton_link_colors=np.array(link_colors).reshape(-1, 3))


def heatmaps_to_image(heatmaps: Tensor,
                      metainfo: dict,
                      out_shape: Optional[Tuple[int, int]] = None) -> Tensor:
    """(P, h, w) heatmaps on the heatmap grid of the padded input (as in
    ``data_sample.heatmaps``) -> (P, H, W) over the original image (or
    ``out_shape``), for a sample's ``metainfo``.

    The grid covers ``batch_input_shape``; the image is its top-left
    ``img_shape`` (mmdet's ``Pad`` pads bottom and right).
    """
    in_h, in_w = (metainfo.get('batch_input_shape')
                  or metainfo['pad_shape'])[:2]
    img_h, img_w = metainfo['img_shape'][:2]
    heat = torch.as_tensor(heatmaps).float()[None]
    heat = F.interpolate(heat, (in_h, in_w), mode='bilinear',
                         align_corners=False)[..., :img_h, :img_w]
    out_shape = tuple(out_shape or metainfo['ori_shape'][:2])
    return F.interpolate(heat, out_shape, mode='bilinear',
                         align_corners=False)[0].clamp(0, 1)


def overlay_heatmap(image: np.ndarray, heatmap: Tensor,
                    alpha: float = 0.5) -> np.ndarray:
    """Jet colours of a (H, W) score map in [0, 1] over an RGB image.

    mmengine's ``convert_overlay_heatmap`` rescales each map to its own
    min-max, which makes an absent class look as hot as a present one; Lumen's
    heatmaps are probabilities, so they keep their absolute scale here.
    """
    scores = (heatmap.cpu().numpy() * 255).astype(np.uint8)
    colors = cv2.applyColorMap(scores, cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(image, 1 - alpha, colors, alpha, 0)


@VISUALIZERS.register_module()
class LumenLocalVisualizer(DetLocalVisualizer):
    """mmdet's ``DetLocalVisualizer`` for Lumen's answers.

    * Instances are named by their prompt (a class name or the referring
      sentence, Lumen's ``label_names``), cut to ``max_label_len``.
    * Keypoints (pose) are drawn by mmpose's ``PoseLocalVisualizer`` with the
      skeleton of ``pose_meta`` between the asked keypoints.
    * :meth:`draw_heatmaps` shows each prompt's heatmap over the image, as
      the paper's Fig. 4.

    Args:
        kpt_thr: keypoints (and their links) below this score are not drawn.
        pose_meta: mmpose's parsed metainfo of the pose dataset (keypoint
            names, skeleton, colours); default COCO's.
        max_label_len: longer prompts are cut in box labels.
        **kwargs: ``DetLocalVisualizer``'s arguments.
    """

    def __init__(self,
                 name: str = 'visualizer',
                 kpt_thr: float = 0.3,
                 pose_meta: Optional[dict] = None,
                 max_label_len: int = 40,
                 **kwargs) -> None:
        from mmpose.visualization import PoseLocalVisualizer
        super().__init__(name=name, **kwargs)
        self.kpt_thr = kpt_thr
        self.pose_meta = pose_meta
        self.max_label_len = max_label_len
        # matplotlib backend: mmpose 1.3.2's OpenCV backend draws keypoints
        # with int(radius_array), which numpy 2 refuses
        self.pose_visualizer = PoseLocalVisualizer(
            name=f'{name}_pose', radius=3, line_width=2, backend='matplotlib')
        self._keypoint_names: List[str] = []

    def add_datasample(self,
                       name: str,
                       image: np.ndarray,
                       data_sample: Optional[DetDataSample] = None,
                       **kwargs) -> None:
        """``DetLocalVisualizer.add_datasample``, instances named by prompt.

        ``image`` is RGB, as for every mmengine visualizer.
        """
        if data_sample is not None and 'pred_instances' in data_sample:
            # clone() is shallow: new instances, so that the caller's
            # label names stay as they were
            data_sample = data_sample.clone()
            preds = data_sample.pred_instances = \
                data_sample.pred_instances.clone()
            self._keypoint_names = []
            if isinstance(preds.get('masks'), (list, tuple)):
                # COCO RLE (test_cfg mask_format='rle'): mmdet draws arrays
                preds.masks = decode_masks(
                    preds.masks, data_sample.metainfo['ori_shape'][:2])
            if 'keypoints' in preds:
                # pose: one instance per person, one keypoint per prompt;
                # mmpose keeps the person's score in ``bbox_scores``
                self._keypoint_names = list(data_sample.metainfo['prompts'])
                preds.label_names = ['person'] * len(preds)
                if 'scores' not in preds:
                    preds.scores = torch.as_tensor(
                        preds.get('bbox_scores', np.ones(len(preds))))
            elif 'label_names' in preds:
                cut = self.max_label_len
                preds.label_names = [
                    escape_mathtext(n if len(n) <= cut else n[:cut - 3] +
                                    '...') for n in preds.label_names
                ]
        super().add_datasample(name, image, data_sample, **kwargs)

    def _draw_instances(self, image: np.ndarray, instances: InstanceData,
                        classes: Optional[List[str]],
                        palette: Optional[List[tuple]]) -> np.ndarray:
        image = super()._draw_instances(image, instances, classes, palette)
        if 'keypoints' not in instances or len(instances) == 0:
            return image
        from mmpose.structures import PoseDataSample
        keypoints = np.asarray(torch.as_tensor(instances.keypoints).cpu())
        scores = np.asarray(
            torch.as_tensor(instances.keypoint_scores).cpu()) \
            if 'keypoint_scores' in instances else np.ones(
                keypoints.shape[:2])
        names = self._keypoint_names or [
            str(i) for i in range(keypoints.shape[1])
        ]
        self.pose_visualizer.set_dataset_meta(
            skeleton_meta(names, self.pose_meta))
        pose = PoseDataSample()
        pose.pred_instances = InstanceData(
            keypoints=keypoints,
            keypoint_scores=scores,
            keypoints_visible=scores)
        self.pose_visualizer.add_datasample(
            'keypoints',
            image,
            pose,
            draw_gt=False,
            draw_bbox=False,
            kpt_thr=self.kpt_thr)
        return self.pose_visualizer.get_image()

    def draw_heatmaps(self,
                      image: np.ndarray,
                      data_sample: DetDataSample,
                      max_panels: int = 8,
                      max_columns: int = 4,
                      long_side: int = 256,
                      alpha: float = 0.5) -> np.ndarray:
        """One panel per prompt (the ``max_panels`` with the highest peaks):
        the RGB image under its heatmap, titled with the prompt and peak."""
        if max_panels < 1:
            raise ValueError(f'max_panels must be >= 1, got {max_panels}; '
                             'draw no heatmaps instead of asking for 0.')
        h, w = image.shape[:2]
        scale = min(1.0, long_side / max(h, w))
        size = (max(1, round(h * scale)), max(1, round(w * scale)))
        small = mmcv.imresize(image, size[::-1]) if scale < 1 else image
        heatmaps = data_sample.get('heatmaps')
        if heatmaps is None:
            raise ValueError('The sample has no heatmaps: call the '
                             'inferencer with return_heatmaps=True.')
        heatmaps = torch.as_tensor(heatmaps).float()
        peaks = heatmaps.flatten(1).max(1).values
        order = peaks.argsort(descending=True)[:max_panels].tolist()
        shown = heatmaps_to_image(heatmaps[order], data_sample.metainfo, size)
        prompts = data_sample.metainfo.get('prompts', [])
        font_size = max(8, min(size) // 20)
        # about 0.75 font sizes per character: wrap titles to the panel
        line_len = max(8, int(size[1] / (0.75 * font_size)))
        panels = []
        for i, heat in zip(order, shown):
            self.set_image(overlay_heatmap(small, heat, alpha))
            title = prompts[i] if i < len(prompts) else f'prompt {i}'
            self.draw_texts(
                escape_mathtext('\n'.join(
                    textwrap.wrap(f'{title}: {float(peaks[i]):.2f}',
                                  line_len))),
                np.array([2, 2]),
                colors='white',
                font_sizes=font_size,
                bboxes=dict(facecolor='black', alpha=0.7, pad=0.5,
                            edgecolor='none'))
            panels.append(self.get_image())
        return _tile(panels, max_columns)


def _tile(panels: List[np.ndarray], max_columns: int) -> np.ndarray:
    """Panels of one size in as few rows as ``max_columns`` allows, filled
    left to right and balanced (6 panels: 2 rows of 3)."""
    rows = -(-len(panels) // max_columns)
    columns = -(-len(panels) // rows)
    panels = panels + [np.zeros_like(panels[0])] * (rows * columns -
                                                    len(panels))
    return np.concatenate([
        np.concatenate(panels[r * columns:(r + 1) * columns], axis=1)
        for r in range(rows)
    ], axis=0)


@HOOKS.register_module()
class LumenVisualizationHook(DetVisualizationHook):
    """mmdet's ``DetVisualizationHook`` that saves every test sample.

    mmdet names each drawing of ``--show-dir`` after its image file, so on a
    multi-task test set the detection, segmentation and grounding samples of
    one image, and the people of one pose image, overwrote each other. Here
    a drawing goes to ``<show_dir>/<task>/<image name>``, with ``_1``,
    ``_2``... before the extension for the image's next samples of that
    task. Arguments are mmdet's.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._written: Dict[str, int] = {}

    def out_file(self, test_out_dir: str, sample: DetDataSample) -> str:
        """Where ``sample`` is drawn: a new file for each sample."""
        name = osp.join(test_out_dir, sample.metainfo.get('task', ''),
                        osp.basename(sample.img_path))
        count = self._written.get(name, 0)
        self._written[name] = count + 1
        if count == 0:
            return name
        stem, ext = osp.splitext(name)
        return f'{stem}_{count}{ext}'

    def after_test_iter(self, runner, batch_idx: int, data_batch: dict,
                        outputs: Sequence[DetDataSample]) -> None:
        """mmdet's drawing of each sample, saved to :meth:`out_file`."""
        if self.draw is False:
            return
        test_out_dir = None
        if self.test_out_dir is not None:
            # as mmdet: relative to the run's folder (an absolute path stays)
            test_out_dir = osp.join(runner.work_dir, runner.timestamp,
                                    self.test_out_dir)
        for sample in outputs:
            self._test_index += 1
            img = mmcv.imfrombytes(
                get(sample.img_path, backend_args=self.backend_args),
                channel_order='rgb')
            self._visualizer.add_datasample(
                osp.basename(sample.img_path) if self.show else 'test_img',
                img,
                data_sample=sample,
                show=self.show,
                wait_time=self.wait_time,
                pred_score_thr=self.score_thr,
                out_file=self.out_file(test_out_dir, sample)
                if test_out_dir else None,
                step=self._test_index)
