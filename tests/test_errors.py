"""Clear errors (issue 8): every row is a mistake a user can make, how it is
triggered, and a message fragment that names the problem and the fix.

The wrong-type SAM checkpoint has its row in tests/test_sam_mask_head.py; an
unsafe pickle checkpoint in tests/test_safe_load.py.
"""
import copy
import shutil

import pytest
import torch

from test_llava_lmm import TINY

# LlavaLMM arguments for a checkpoint directory (no model configs)
FROM_DIR = {
    k: v
    for k, v in TINY.items() if k not in ('vision_config', 'text_config')
}


def _lmm(**kwargs):
    from lumen_mm.models import LlavaLMM
    torch.manual_seed(0)
    return LlavaLMM(**kwargs)


def _save_llava(request, tmp_path, weights=True, tokenizer=True):
    """A tiny Hugging Face LLaVA directory, optionally incomplete."""
    lmm = _lmm(tokenizer=request.getfixturevalue('tokenizer_dir'), **TINY)
    path = tmp_path / 'llava'
    lmm.hf_model.save_pretrained(path)
    if tokenizer:
        lmm.tokenizer.save_pretrained(path)
    if not weights:
        for f in path.glob('*.safetensors'):
            f.unlink()
    return path


def missing_checkpoint_dir(request, tmp_path):
    _lmm(pretrained=str(tmp_path / 'nowhere'), **FROM_DIR)


def missing_checkpoint_file(request, tmp_path):
    from lumen_mm.utils import load_checkpoint
    load_checkpoint(str(tmp_path / 'iter_100.pth'))


def checkpoint_dir_without_weights(request, tmp_path):
    _lmm(pretrained=str(_save_llava(request, tmp_path, weights=False)),
         **FROM_DIR)


def checkpoint_dir_with_pickled_weights(request, tmp_path):
    path = _save_llava(request, tmp_path, weights=False)
    torch.save({}, path / 'pytorch_model.bin')
    _lmm(pretrained=str(path), **FROM_DIR)


def checkpoint_dir_without_tokenizer(request, tmp_path):
    _lmm(pretrained=str(_save_llava(request, tmp_path, tokenizer=False)),
         **FROM_DIR)


def config_with_missing_data(request, tmp_path):
    from conftest import retarget

    from lumen_mm.cli import build_runner
    cfg = request.getfixturevalue('tiny_cfg')
    shapes_root = str(request.getfixturevalue('shapes_root'))
    build_runner(retarget(cfg, shapes_root, str(tmp_path / 'lumen_shapes')))


def corrupt_image(request, tmp_path):
    """A truncated PNG met where training meets it: the config's dataset."""
    from conftest import retarget
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    shapes_root = request.getfixturevalue('shapes_root')
    copy_root = tmp_path / 'lumen_shapes'
    shutil.copytree(shapes_root, copy_root)
    image = copy_root / 'train' / '000000.png'
    image.write_bytes(image.read_bytes()[:500])
    cfg = retarget(
        request.getfixturevalue('tiny_cfg'), str(shapes_root), str(copy_root))
    # training pipelines load with LumenLoadImageFromFile (test pipelines
    # with mmcv's LoadImageFromFile, the step mmdet's DetInferencer replaces)
    dataset = DATASETS.build(
        copy.deepcopy(cfg.train_dataloader.dataset.datasets.det))
    dataset[0]


def _conversation(request):
    return _lmm(tokenizer=request.getfixturevalue('tokenizer_dir'),
                **TINY).conversation


def empty_description(request, tmp_path):
    _conversation(request).location_prompt('det', '   ')


def empty_instruction(request, tmp_path):
    _conversation(request).instruction_prompt('')


def unknown_task(request, tmp_path):
    from lumen_mm.datasets import LumenDetPrompts
    LumenDetPrompts(task='detect')


def empty_class_list(request, tmp_path):
    from mmengine.registry import init_default_scope

    from mmdet.registry import DATASETS
    init_default_scope('mmdet')
    cfg = request.getfixturevalue('tiny_cfg')
    det_val = copy.deepcopy(cfg.val_dataloader.dataset.datasets[0])
    det_val.metainfo = dict(classes=())
    DATASETS.build(det_val)[0]


def tokenizer_not_of_the_checkpoint(request, tmp_path):
    """A model checkpoint loaded into a model built with another tokenizer,
    through mmengine's (non-strict) loading."""
    from mmengine.runner.checkpoint import load_state_dict
    from transformers import AutoTokenizer
    tokenizer_dir = request.getfixturevalue('tokenizer_dir')
    state_dict = _lmm(tokenizer=tokenizer_dir, **TINY).state_dict()
    other = AutoTokenizer.from_pretrained(tokenizer_dir)
    other.add_tokens(['sphere', 'cube'])
    other.save_pretrained(tmp_path / 'other_tokenizer')
    model = _lmm(tokenizer=str(tmp_path / 'other_tokenizer'), **TINY)
    load_state_dict(model, state_dict, strict=False)


def tokenizer_bigger_than_the_checkpoint(request, tmp_path):
    path = _save_llava(request, tmp_path)
    other = tmp_path / 'big_tokenizer'
    shutil.copytree(path, other)
    from transformers import AutoTokenizer
    tokenizer = AutoTokenizer.from_pretrained(other)
    tokenizer.add_tokens([f'word{i}' for i in range(100)])
    tokenizer.save_pretrained(other)
    _lmm(pretrained=str(path), tokenizer=str(other), **FROM_DIR)


def patch_does_not_divide_input(request, tmp_path):
    _lmm(tokenizer=request.getfixturevalue('tokenizer_dir'),
         **dict(TINY, aligner_image_size=60))


# (trigger, exception, fragment naming the problem and the fix)
ROWS = [
    (missing_checkpoint_dir, FileNotFoundError,
     r"does not exist\. Point `pretrained` at a local Hugging Face LLaVA "
     r"directory \(config\.json, model\*\.safetensors, tokenizer files\)"),
    (missing_checkpoint_file, FileNotFoundError,
     r"iter_100\.pth' does not exist\. Pass a \.pth file written by "
     r"tools/train\.py"),
    (checkpoint_dir_without_weights, FileNotFoundError,
     r"is incomplete: it lacks model\*\.safetensors\. A Hugging Face LLaVA "
     r"directory holds config\.json, model\*\.safetensors and the tokenizer"),
    (checkpoint_dir_with_pickled_weights, FileNotFoundError,
     r"lacks model\*\.safetensors \(pickled weights \['pytorch_model\.bin'\] "
     r"are not loaded: convert them"),
    (checkpoint_dir_without_tokenizer, FileNotFoundError,
     r"lacks tokenizer\.json or tokenizer\.model \(or set `tokenizer` to a "
     r"tokenizer directory\)"),
    (config_with_missing_data, FileNotFoundError,
     r"(?s)Dataset files of this config are missing\. It expects this data "
     r"layout.*annotations/instances_train\.json   <- missing.*train/   <- "
     r"missing.*python tools/make_shapes\.py --out data/lumen_shapes"),
    (corrupt_image, ValueError,
     r"000000\.png' is corrupt or not an image .*Replace it with a good copy"),
    (empty_description, ValueError,
     r"Empty description: give a class name or a referring sentence"),
    (empty_instruction, ValueError,
     r"Empty instruction: ask the model something"),
    (unknown_task, ValueError,
     r"Unknown task 'detect' for LumenDetPrompts: set task='det' \(boxes\) "
     r"or 'seg'"),
    (empty_class_list, ValueError,
     r"class list is empty, so there is nothing to detect: set "
     r"`metainfo=dict\(classes=\(\.\.\.\)\)`"),
    (tokenizer_not_of_the_checkpoint, ValueError,
     r"token embedding has \d+ rows but this model has \d+ .*trained with "
     r"another tokenizer\. Point `tokenizer`"),
    (tokenizer_bigger_than_the_checkpoint, ValueError,
     r"not the tokenizer this LLaVA was trained with\. Use the checkpoint's "
     r"own tokenizer"),
    (patch_does_not_divide_input, ValueError,
     r"must be multiples of the patch size 8: set `image_size` and "
     r"`aligner_image_size` to multiples of it"),
]


@pytest.mark.parametrize('trigger, error, fragment', ROWS,
                         ids=[row[0].__name__ for row in ROWS])
def test_clear_error(trigger, error, fragment, request, tmp_path):
    with pytest.raises(error, match=fragment):
        trigger(request, tmp_path)
