"""Demo: ask Lumen about one picture, draw the answer and its heatmaps.

``python tools/demo.py IMAGE "instruction" --config C --checkpoint K
--out-dir D`` (or ``--task det --classes cat dog`` / ``--task ground --text
"the man on the left"`` instead of the instruction) writes to ``D``:

* ``<image>_pred.png``: boxes, masks, keypoints with skeleton, prompts and
  scores (mmdet's / mmpose's visualizers), unless the answer is only text;
* ``<image>_heatmap.png``: each prompt's heatmap over the image (Fig. 4),
  for answers that went through the heatmap;

and prints the answer (instances, count, text).
"""
import argparse
import os
import os.path as osp
from typing import Dict, Optional

import mmcv
from mmdet.structures import DetDataSample

from lumen_mm.apis.inferencer import TASK_PROMPTS, LumenInferencer, load_image

# long side (pixels) beyond which the answer is drawn on a downscaled copy
MAX_DRAW_SIDE = 4096


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/demo.py``."""
    parser = argparse.ArgumentParser(
        description='Run Lumen on one image and draw its answer')
    parser.add_argument('image', help='image file (any size, JPEG/PNG...)')
    parser.add_argument(
        'instruction',
        nargs='?',
        help='free-form instruction, e.g. "Find every person"; or use --task')
    parser.add_argument('--config', required=True, help='config file')
    parser.add_argument(
        '--checkpoint', help='checkpoint file (default: random weights)')
    parser.add_argument('--out-dir', required=True, help='output folder')
    parser.add_argument(
        '--task', choices=tuple(TASK_PROMPTS), help='task instead of an '
        'instruction')
    parser.add_argument(
        '--classes', nargs='+', help='names to find (det, seg, count, pose; '
        'default: the checkpoint\'s classes)')
    parser.add_argument(
        '--text', help='referring sentence (ground, refseg) or question (vqa)')
    parser.add_argument(
        '--person-bboxes', type=float, nargs='+', metavar='X1 Y1 X2 Y2',
        help='pose: the people to find keypoints on, four numbers per box in '
        'the image\'s pixels (default: the whole image is one person)')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='draw instances above this score')
    parser.add_argument(
        '--max-heatmaps', type=int, default=8,
        help='heatmap panels: the prompts with the highest peaks (0: no '
        'heatmap picture)')
    parser.add_argument(
        '--max-draw-side', type=int, default=MAX_DRAW_SIDE,
        help='draw the answer on a copy downscaled to this long side when '
        'the image is larger (drawing at full size takes about 60 bytes per '
        'pixel: 8.7 GB for a 12000 px image)')
    parser.add_argument(
        '--heatmap-size', type=int, default=256,
        help='long side of each heatmap panel, in pixels')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, ...')
    return parser


def describe(sample: DetDataSample, score_thr: float) -> str:
    """The answer as text: task, instances above ``score_thr``, count,
    generated text."""
    meta = sample.metainfo
    task = sample.get('pred_task', meta.get('task'))
    lines = [f'task: {task}']
    preds = sample.get('pred_instances')
    if preds is not None and 'keypoints' in preds:
        for person, scores in zip(preds.keypoints.tolist(),
                                  preds.keypoint_scores.tolist()):
            lines.append('keypoints:')
            for name, (x, y), score in zip(meta['prompts'], person, scores):
                lines.append(f'  {name}: {score:.2f} at ({x:.0f}, {y:.0f})')
    elif preds is not None and 'scores' in preds:
        keep = preds[preds.scores > score_thr]
        lines.append(f'{len(keep)} instances with score > {score_thr}')
        for box, score, name in zip(keep.bboxes.tolist(),
                                    keep.scores.tolist(), keep.label_names):
            coords = ', '.join(f'{v:.0f}' for v in box)
            lines.append(f'  {name}: {score:.2f} at [{coords}]')
    if 'pred_count' in sample:
        lines.append(f'count: {int(sample.pred_count)}')
    if 'pred_text' in sample:
        lines.append(f'answer: {sample.pred_text}')
    return '\n'.join(lines)


def run_demo(image: str,
             out_dir: str,
             inferencer: LumenInferencer,
             score_thr: float = 0.3,
             max_heatmaps: int = 8,
             heatmap_size: int = 256,
             max_draw_side: int = MAX_DRAW_SIDE,
             **call_kwargs) -> Dict[str, str]:
    """Run ``inferencer`` on ``image`` and write the pictures to
    ``out_dir``; returns their paths and the answer text.

    ``max_heatmaps=0`` writes no heatmap picture. An image with a side over
    ``max_draw_side`` is drawn on a downscaled copy (the answer says so).
    """
    from lumen_mm.visualization import (LumenLocalVisualizer,
                                        downscale_for_drawing)
    if max_heatmaps < 0:
        raise ValueError(f'max_heatmaps must be >= 0 (0: no heatmap '
                         f'picture), got {max_heatmaps}.')
    sample = inferencer(image, return_heatmaps=max_heatmaps > 0,
                        **call_kwargs)
    rgb, drawn, scale = downscale_for_drawing(
        mmcv.bgr2rgb(load_image(image)), sample, max_draw_side)
    os.makedirs(out_dir, exist_ok=True)
    stem = osp.splitext(osp.basename(image))[0]
    visualizer = LumenLocalVisualizer(
        name=f'lumen_demo_{id(sample)}', pose_meta=inferencer.pose_meta)
    outputs = {}
    if 'pred_instances' in sample:  # not for a text answer
        outputs['pred'] = osp.join(out_dir, f'{stem}_pred.png')
        visualizer.add_datasample(
            stem,
            rgb,
            drawn,
            draw_gt=False,
            pred_score_thr=score_thr,
            out_file=outputs['pred'])
    if sample.get('heatmaps') is not None:
        outputs['heatmap'] = osp.join(out_dir, f'{stem}_heatmap.png')
        mmcv.imwrite(
            mmcv.rgb2bgr(
                visualizer.draw_heatmaps(
                    rgb, sample, max_heatmaps, long_side=heatmap_size)),
            outputs['heatmap'])
    outputs['answer'] = describe(sample, score_thr)
    if scale < 1:
        h, w = sample.ori_shape[:2]
        outputs['answer'] += (
            f'\n(drawn on a copy downscaled from {w} x {h} to '
            f'{rgb.shape[1]} x {rgb.shape[0]} pixels: --max-draw-side '
            f'{max_draw_side})')
    return outputs


def main(argv: Optional[list] = None) -> Dict[str, str]:
    """Entry point of ``tools/demo.py``."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.instruction is None and args.task is None:
        parser.error('give an instruction ("Find every person") or --task '
                     'with --classes / --text')
    if not osp.isfile(args.image):
        parser.error(f'image not found: {args.image!r}')
    if args.max_heatmaps < 0:
        parser.error('--max-heatmaps must be >= 0 (0: no heatmap picture)')
    if args.max_draw_side < 1:
        parser.error('--max-draw-side must be >= 1 pixel')
    person_bboxes = args.person_bboxes
    if person_bboxes is not None:
        if args.task != 'pose' or len(person_bboxes) % 4:
            parser.error('--person-bboxes goes with --task pose, four '
                         'numbers (x1 y1 x2 y2) per person')
        person_bboxes = [person_bboxes[i:i + 4]
                         for i in range(0, len(person_bboxes), 4)]
    inferencer = LumenInferencer(
        args.config, args.checkpoint, device=args.device, show_progress=False)
    outputs = run_demo(
        args.image,
        args.out_dir,
        inferencer,
        score_thr=args.score_thr,
        max_heatmaps=args.max_heatmaps,
        heatmap_size=args.heatmap_size,
        max_draw_side=args.max_draw_side,
        instruction=args.instruction,
        task=args.task,
        classes=args.classes,
        text=args.text,
        person_bboxes=person_bboxes)
    print(outputs['answer'])
    for kind in ('pred', 'heatmap'):
        if kind in outputs:
            print(f'{kind} picture: {outputs[kind]}')
    return outputs
