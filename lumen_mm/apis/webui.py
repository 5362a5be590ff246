"""Browser demo: ``python tools/webui.py --config C --checkpoint K`` serves a
gradio page on which a person uploads a photo, picks a task (or types an
instruction), gives class names or a sentence, and sees the boxes, masks or
keypoints drawn, the answer text and the heatmaps over the photo.

The page calls :class:`LumenInferencer` through :func:`run_demo`, so it
draws exactly what ``tools/demo.py`` writes. Every bad input (no photo, an
empty or undecodable file, too many pixels, malformed names or person boxes)
is reported on the page as a ``gr.Error`` naming the problem.
"""
import argparse
import os.path as osp
import re
import tempfile
from typing import List, Optional, Tuple

import mmcv
import numpy as np
from PIL import Image, UnidentifiedImageError

from lumen_mm.apis.demo import run_demo
from lumen_mm.apis.inferencer import (TASK_PROMPTS, LumenInferencer,
                                      load_image)

try:
    import gradio as gr
except ImportError as err:  # the demo extra is optional
    raise ImportError('The browser demo needs gradio: pip install '
                      '"lumen_mm[demo]" (or pip install gradio).') from err

INSTRUCTION = 'instruction'
# (label shown on the page, task name)
TASK_CHOICES = [
    ('free-form instruction', INSTRUCTION),
    ('detection (det)', 'det'),
    ('instance segmentation (seg)', 'seg'),
    ('grounding (ground)', 'ground'),
    ('referring segmentation (refseg)', 'refseg'),
    ('pose (keypoints)', 'pose'),
    ('counting (count)', 'count'),
    ('question answering (vqa)', 'vqa'),
]
TASK_NAMES = frozenset(name for _, name in TASK_CHOICES)

# What the prompt box asks for, by the kind of prompt a task takes.
PROMPT_HINTS = {
    INSTRUCTION: ('Instruction',
                  'e.g. Please find the location of star. Respond with '
                  'boxes.'),
    'classes': ('Class names (comma-separated)',
                'e.g. star, cross -- empty: every class of the checkpoint'),
    'pose': ('Keypoint names (comma-separated)',
             'empty: the keypoints the model was trained on'),
    'text': ('Sentence or question',
             'e.g. the orange shape to the right of the orange cross'),
}
IMAGE_HEIGHT = 320  # pixels on the page
# Pictures fill their box: small ones (Lumen-Shapes' 128 px) are scaled up.
CSS = '#photo img, #result img, #heatmaps img {width: 100%; height: 100%; ' \
      'object-fit: contain}'
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB
IMAGE_TYPES = 'JPEG, PNG, BMP, TIFF, GIF or WebP'
# The default theme's Google font would be fetched by every browser; the
# system fonts keep the page whole where there is no internet.
THEME_FONTS = dict(font=['ui-sans-serif', 'system-ui', 'sans-serif'],
                   font_mono=['ui-monospace', 'monospace'])


def _prompt_kind(task: str) -> str:
    """Key of :data:`PROMPT_HINTS` for ``task``."""
    if task in (INSTRUCTION, 'pose'):
        return task
    return TASK_PROMPTS[task]


def photo_input(**kwargs) -> gr.Image:
    """``gr.Image`` that hands the uploaded file over undecoded.

    ``gr.Image`` opens the upload with PIL before the event function runs,
    so a file that is not an image would fail inside gradio with PIL's
    message; this one lets :func:`read_photo` say what is wrong. The
    instance's ``preprocess`` is replaced, not subclassed: gradio writes a
    ``.pyi`` stub beside the module of every component subclass.
    """
    photo = gr.Image(type='filepath', **kwargs)
    decode = photo.preprocess  # for pictures sent inline (data: URLs)
    photo.preprocess = lambda payload: payload.path if getattr(
        payload, 'path', None) else decode(payload)
    return photo


def read_photo(path: Optional[str], max_pixels: int) -> Image.Image:
    """Decode an uploaded photo to an upright RGB PIL image.

    Raises ``gr.Error`` naming the problem: nothing uploaded, an empty file,
    a file that is no image, a damaged image, or more than ``max_pixels``
    pixels (checked from the header, before decoding).
    """
    if not path:
        raise gr.Error('Upload a photo first.')
    name = osp.basename(path)
    if not osp.isfile(path):
        raise gr.Error(f'The upload {name!r} is gone: upload it again.')
    if osp.getsize(path) == 0:
        raise gr.Error(f'The uploaded file {name!r} is empty (0 bytes).')
    try:
        image = Image.open(path)
    except UnidentifiedImageError:
        raise gr.Error(f'{name!r} is not an image: upload a {IMAGE_TYPES} '
                       'photo.') from None
    except Image.DecompressionBombError:
        raise gr.Error(f'{name!r} is too large: downscale it to at most '
                       f'{max_pixels:,} pixels.') from None
    width, height = image.size
    if width * height > max_pixels:
        raise gr.Error(f'{name!r} is too large: {width} x {height} = '
                       f'{width * height:,} pixels, the limit is '
                       f'{max_pixels:,}. Downscale it.')
    if width < 1 or height < 1:
        raise gr.Error(f'{name!r} has no pixels ({width} x {height}).')
    try:
        image.load()
    except (OSError, ValueError) as err:
        raise gr.Error(f'{name!r} is damaged or truncated and cannot be '
                       f'decoded ({err}).') from None
    try:  # as the inferencer reads it: 16-bit scaled, float refused
        return Image.fromarray(mmcv.bgr2rgb(load_image(image)))
    except ValueError as err:
        raise gr.Error(f'{name!r}: {err}') from None


def check_upload(path: Optional[str], max_pixels: int) -> None:
    """Report a bad upload on the page as soon as it arrives."""
    read_photo(path, max_pixels)


def parse_names(text: str) -> Optional[List[str]]:
    """Comma-separated names; None for an empty box (the defaults)."""
    if not text.strip():
        return None
    names = [n.strip() for n in text.split(',')]
    if not all(names):
        raise gr.Error(f'Empty name in {text!r}: separate names with single '
                       'commas, e.g. "star, cross".')
    return names


def parse_person_boxes(text: str) -> Optional[List[List[float]]]:
    """Person boxes as ``x1 y1 x2 y2`` groups of four numbers; None for an
    empty box (the whole photo is one person)."""
    if not text.strip():
        return None
    values = re.split(r'[\s,;]+', text.strip())
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        raise gr.Error(f'Person boxes {text!r}: give numbers only, four per '
                       'person (x1 y1 x2 y2).') from None
    if len(numbers) % 4:
        raise gr.Error(f'Person boxes {text!r}: {len(numbers)} numbers, but '
                       'four per person (x1 y1 x2 y2).')
    return [numbers[i:i + 4] for i in range(0, len(numbers), 4)]


def _call_kwargs(task: str, prompt: str, person_boxes: str) -> dict:
    """The inferencer's arguments for the page's task and prompt box."""
    if task == INSTRUCTION:
        return dict(instruction=prompt)
    kwargs = dict(task=task)
    if TASK_PROMPTS[task] == 'text':
        kwargs['text'] = prompt
    else:
        kwargs['classes'] = parse_names(prompt)
    if task == 'pose':
        kwargs['person_bboxes'] = parse_person_boxes(person_boxes)
    return kwargs


def answer(inferencer: LumenInferencer,
           photo: Optional[str],
           task: str,
           prompt: str,
           person_boxes: str = '',
           score_thr: float = 0.3,
           max_pixels: int = MAX_PIXELS,
           progress: Optional[gr.Progress] = None
           ) -> Tuple[Optional[np.ndarray], Optional[np.ndarray], str]:
    """Ask Lumen about the uploaded ``photo``.

    Returns the drawn answer (RGB, None for a text answer), the heatmap
    panels (RGB, None when the answer had no heatmap) and the answer text.
    """
    # not `progress or ...`: an unused gr.Progress has len 0, so is falsy
    report = (lambda *args, **kwargs: None) if progress is None else progress
    if task not in TASK_NAMES:
        raise gr.Error(f'Unknown task {task!r}: pick one of the list.')
    report(0.0, desc='Reading the photo')
    image = read_photo(photo, max_pixels)
    kwargs = _call_kwargs(task, prompt or '', person_boxes or '')
    with tempfile.TemporaryDirectory(prefix='lumen_webui_') as tmp:
        path = osp.join(tmp, 'photo.png')
        image.save(path, compress_level=1)  # fast for big photos
        report(0.2, desc='Lumen is answering and drawing')
        try:
            outputs = run_demo(path, osp.join(tmp, 'out'), inferencer,
                               score_thr=score_thr, **kwargs)
        except (ValueError, TypeError) as err:  # the inferencer's checks
            raise gr.Error(str(err)) from None
        report(0.9, desc='Showing the answer')
        pictures = [
            mmcv.imread(outputs[kind], channel_order='rgb')
            if kind in outputs else None for kind in ('pred', 'heatmap')
        ]
    return pictures[0], pictures[1], outputs['answer']


def _prompt_box_update(task: str) -> Tuple[dict, dict]:
    """Prompt box label and hint for ``task``; person boxes only for pose."""
    label, hint = PROMPT_HINTS[_prompt_kind(task)]
    return (gr.update(label=label, placeholder=hint),
            gr.update(visible=task == 'pose'))


def build_app(inferencer: LumenInferencer,
              score_thr: float = 0.3,
              max_pixels: int = MAX_PIXELS) -> gr.Blocks:
    """The demo page around ``inferencer``."""
    label, hint = PROMPT_HINTS[INSTRUCTION]
    with gr.Blocks(title='Lumen demo', analytics_enabled=False) as app:
        gr.Markdown('## Lumen: ask about a photo\nUpload a photo, pick a '
                    'task (or write an instruction), give the names or the '
                    'sentence, and press **Run**.')
        with gr.Row():
            with gr.Column():
                photo = photo_input(label='Photo',
                                    sources=['upload', 'clipboard'],
                                    height=IMAGE_HEIGHT, elem_id='photo')
                task = gr.Radio(TASK_CHOICES, value=INSTRUCTION, label='Task',
                                elem_id='task')
                prompt = gr.Textbox(label=label, placeholder=hint, lines=2,
                                    elem_id='prompt')
                person_boxes = gr.Textbox(
                    label='Person boxes (x1 y1 x2 y2 per person; empty: the '
                    'whole photo)', visible=False, elem_id='person_boxes')
                threshold = gr.Slider(0, 1, value=score_thr, step=0.05,
                                      label='Draw instances scoring above',
                                      elem_id='score_thr')
                run = gr.Button('Run', variant='primary', elem_id='run')
            with gr.Column():
                drawn = gr.Image(label='Answer', format='png',
                                 interactive=False, height=IMAGE_HEIGHT,
                                 elem_id='result')
                text = gr.Textbox(label='Answer text', lines=6,
                                  interactive=False, elem_id='answer')
                heatmaps = gr.Image(label='Heatmaps', format='png',
                                    interactive=False, height=IMAGE_HEIGHT,
                                    elem_id='heatmaps')

        def on_run(photo_path, task_name, prompt_text, boxes, thr,
                   progress=gr.Progress()):
            return answer(inferencer, photo_path, task_name, prompt_text,
                          boxes, thr, max_pixels, progress)

        task.change(_prompt_box_update, task, [prompt, person_boxes])
        # check an upload at once, so that a bad file is reported before Run
        photo.upload(lambda path: check_upload(path, max_pixels), photo,
                     None)
        run.click(on_run, [photo, task, prompt, person_boxes, threshold],
                  [drawn, heatmaps, text])
    return app


def build_parser() -> argparse.ArgumentParser:
    """Arguments of ``tools/webui.py``."""
    parser = argparse.ArgumentParser(
        description='Serve the Lumen browser demo (gradio)')
    parser.add_argument('--config', required=True, help='config file')
    parser.add_argument(
        '--checkpoint', help='checkpoint file (default: random weights)')
    parser.add_argument('--device', default='cpu', help='cpu, cuda, ...')
    parser.add_argument(
        '--host', default='127.0.0.1',
        help='address to serve on (0.0.0.0: every interface)')
    parser.add_argument('--port', type=int, default=7860, help='port')
    parser.add_argument(
        '--score-thr', type=float, default=0.3,
        help='initial drawing threshold of instance scores')
    parser.add_argument(
        '--max-upload-mb', type=float, default=20,
        help='largest upload accepted, in megabytes')
    parser.add_argument(
        '--max-megapixels', type=float, default=MAX_PIXELS / 1e6,
        help='largest photo accepted, in megapixels')
    return parser


def main(argv: Optional[list] = None) -> None:
    """Entry point of ``tools/webui.py``: load the model, serve the page
    until interrupted."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.checkpoint is not None and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint not found: {args.checkpoint!r}')
    if args.max_upload_mb <= 0 or args.max_megapixels <= 0:
        parser.error('--max-upload-mb and --max-megapixels must be > 0')
    inferencer = LumenInferencer(
        args.config, args.checkpoint, device=args.device, show_progress=False)
    app = build_app(inferencer, args.score_thr,
                    int(args.max_megapixels * 1e6))
    # one question at a time: the model is not shared between threads
    app.queue(default_concurrency_limit=1).launch(
        server_name=args.host, server_port=args.port,
        max_file_size=int(args.max_upload_mb * 1024 * 1024),
        footer_links=[], theme=gr.themes.Default(**THEME_FONTS), css=CSS)
