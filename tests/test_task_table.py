"""The task table (lumen_mm/tasks.py) is the one place tasks are defined,
and everything that routes by task reads it."""
import ast
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from lumen_mm.tasks import (DECODERS, META_KEYS, TASKS, TEMPLATE_TASKS,
                            get_task, task_test_cfg, template_of)

PACKAGE = Path(__file__).resolve().parents[1] / 'lumen_mm'


def test_every_task_is_consistent():
    for name, task in TASKS.items():
        assert task.name == name and task.decoder in DECODERS
        assert (task.token is None) == (task.answer_format is None)
        assert task.locates == (template_of(name).token is not None)
    tokens = [TASKS[t].token for t in TEMPLATE_TASKS]
    assert len(set(tokens)) == len(tokens)
    # counting asks with detection's template (Sec. 4.4)
    assert template_of('count').name == 'det'
    with pytest.raises(ValueError, match="Unknown task 'detect'"):
        get_task('detect')


def test_special_tokens_keep_their_order():
    """Token ids follow this order: a checkpoint's embedding rows depend on
    it."""
    from lumen_mm.models.backbones.conversation import LUMEN_SPECIAL_TOKENS
    assert LUMEN_SPECIAL_TOKENS == [
        '[LOC]', '[DET]', '[SEG]', '[POINT]', '[GROUND]', '[REFSEG]'
    ]


def test_templates_come_from_the_table(tokenizer_dir):
    from lumen_mm.models.backbones.conversation import (
        IMAGE_TOKEN, LUMEN_SPECIAL_TOKENS, ConversationTemplate)
    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    tok.add_tokens([IMAGE_TOKEN, *LUMEN_SPECIAL_TOKENS], special_tokens=True)
    conv = ConversationTemplate(tok, num_image_tokens=4)
    routes = conv.task_token_ids()
    for name in TEMPLATE_TASKS:
        task = TASKS[name]
        text = tok.decode(conv.location_prompt(name, 'star').input_ids)
        assert f'Respond with {task.answer_format}.' in text
        assert text.rstrip('</s>').endswith(f'{task.token}.')
        assert routes[conv.token_id(task.token)] == name
    with pytest.raises(ValueError, match='no location template'):
        conv.location_prompt('vqa', 'star')


def test_test_cfg_defaults_and_typos():
    cfg = task_test_cfg(dict(det=dict(topk=20)))
    assert cfg['det'] == dict(topk=20, nms_iou=0.5, max_per_img=100)
    assert cfg['count']['score_thr'] == TASKS['count'].test_cfg['score_thr']
    assert TASKS['det'].test_cfg['topk'] == 100  # the table is not changed
    with pytest.raises(ValueError, match="unknown keys \\['topkk'\\]"):
        task_test_cfg(dict(det=dict(topkk=20)))
    with pytest.raises(ValueError, match="'detect'"):
        task_test_cfg(dict(detect=dict(topk=20)))


def test_pack_lumen_inputs_keeps_every_task_key():
    from lumen_mm.datasets import PackLumenInputs
    pack = PackLumenInputs(extra_meta_keys=('return_heatmaps', ))
    results = dict(
        img=np.zeros((8, 8, 3), np.uint8), img_id=1, img_path='a.png',
        ori_shape=(8, 8), img_shape=(8, 8), scale_factor=(1., 1.),
        task='pose', prompts=['head'], prompt_labels=[0],
        input_center=np.zeros(2), person_bbox=np.zeros(4),
        return_heatmaps=True, not_kept=1)
    meta = pack(results)['data_samples'].metainfo
    assert {'task', 'prompts', 'prompt_labels', 'input_center',
            'person_bbox', 'return_heatmaps'} <= set(meta)
    assert 'not_kept' not in meta
    assert set(META_KEYS) >= {k for t in TASKS.values() for k in t.meta_keys}


def test_inferencer_prompts_follow_the_table():
    from lumen_mm.apis import TASK_PROMPTS
    assert set(TASK_PROMPTS) == set(TASKS) - {'instruction'}
    assert TASK_PROMPTS['ground'] == 'text' and TASK_PROMPTS['det'] == \
        'classes'


def test_models_do_not_import_datasets():
    """Layering: the model reads the task table, never the data side."""
    for path in (PACKAGE / 'models').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(
                node, ast.Import) else [node.module or ''] if isinstance(
                    node, ast.ImportFrom) else [])
            assert not any('datasets' in n for n in names), path


def test_box_predictions_name_their_prompts():
    """``label_names`` follows each box's prompt through NMS, so mmdet's
    visualiser draws the asked names."""
    from lumen_mm.models import HeatmapHead
    head = HeatmapHead()
    heat = torch.full((2, 1, 4, 4), -9.)
    heat[0, 0, 1, 1] = heat[1, 0, 2, 3] = 9.
    preds = dict(heatmap=heat, wh=torch.ones(2, 2, 4, 4))
    meta = dict(prompts=['star', 'cross'], prompt_labels=[3, 5],
                scale_factor=(2., 2.))
    results = head.predict_by_feat(preds, meta, dict(topk=2, nms_iou=0.5),
                                   stride=8.)
    top = results.scores.argsort(descending=True)[:2]
    assert sorted(results.labels[top].tolist()) == [3, 5]
    assert {results.label_names[i]: int(results.labels[i])
            for i in top.tolist()} == dict(star=3, cross=5)
    # rescaled to the original frame: cell (1, 1) of stride 8, halved
    star = results.bboxes[results.labels == 3][0]
    assert torch.allclose((star[:2] + star[2:]) / 2, torch.tensor([6., 6.]))
