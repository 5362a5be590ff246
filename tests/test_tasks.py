"""Every task on the tiny all-tasks model: losses, decoding, routing."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate

from conftest import REPO, tiny_config

ALL_TASKS_CONFIG = REPO / 'configs/lumen/shapes/lumen_tiny_shapes_all_tasks.py'
# the config of `make shapes`
HIGH_RES_CONFIG = ALL_TASKS_CONFIG.with_name(
    'lumen_tiny_shapes_all_tasks_high_res.py')
TASKS = ('det', 'seg', 'count', 'ground', 'refseg', 'pose', 'vqa')


def _shrink(cfg):
    cfg.model.mask_head.tiny = dict(
        img_size=128, embed_dim=32, depth=1, prompt_embed_dim=32,
        decoder_depth=1, decoder_mlp_dim=64)
    return cfg


@pytest.fixture(scope='module')
def all_cfg(shapes_root, tmp_path_factory):
    work_dir = tmp_path_factory.mktemp('all_tasks')
    return _shrink(tiny_config(ALL_TASKS_CONFIG, shapes_root, work_dir))


@pytest.fixture(scope='module')
def built(all_cfg):
    from mmdet.registry import DATASETS, MODELS
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(all_cfg.model))
    train_set = DATASETS.build(copy.deepcopy(all_cfg.train_dataloader.dataset))
    val_set = DATASETS.build(copy.deepcopy(all_cfg.val_dataloader.dataset))
    return model, train_set, val_set


def test_one_batch_of_every_task_trains(built):
    model, train_set, _ = built
    assert set(train_set.tasks) == set(TASKS)
    batch = pseudo_collate([train_set.datasets[t][0] for t in TASKS])
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(**data)
    assert set(losses) == {
        'loss_heatmap', 'loss_wh', 'loss_lm', 'loss_loc_words', 'loss_mask',
        'loss_dice'
    }
    total = sum(losses.values())
    assert torch.isfinite(total)
    model.zero_grad()
    total.backward()
    assert model.mask_head.sam.mask_decoder.output_upscaling[0] \
        .weight.grad.abs().sum() > 0


def test_vqa_samples_carry_no_heatmap_loss(built):
    model, train_set, _ = built
    vqa = train_set.datasets['vqa']
    batch = pseudo_collate([vqa[0], vqa[1]])
    data = model.data_preprocessor(batch, training=True)
    model.zero_grad()
    losses = model.loss(**data)
    assert losses['loss_heatmap'] == 0 and losses['loss_wh'] == 0
    assert losses['loss_loc_words'] == 0  # no description to name
    assert losses['loss_lm'] > 0
    sum(losses.values()).backward()
    grad = model.neck.text_proj[0].weight.grad
    assert grad is None or grad.abs().sum() == 0


def test_predict_every_task(built):
    model, _, val_set = built
    model.eval()
    starts = [0] + list(val_set.cumulative_sizes[:-1])
    batch = pseudo_collate([val_set[i] for i in starts])
    with torch.no_grad():
        out = model.test_step(batch)
    by_task = {s.metainfo['task']: s for s in out}
    assert set(by_task) == set(TASKS)
    for task in ('seg', 'refseg'):
        sample = by_task[task]
        masks = sample.pred_instances.masks
        assert masks.dtype == torch.bool
        assert masks.shape[1:] == sample.metainfo['ori_shape'][:2]
        assert len(masks) == len(sample.pred_instances.bboxes)
    pose = by_task['pose']
    keypoints = pose.pred_instances.keypoints
    assert keypoints.shape == (1, len(pose.metainfo['prompts']), 2)
    x1, y1, x2, y2 = pose.metainfo['person_bbox']
    # the crop is the box enlarged 1.25x: every keypoint lands around it
    w, h = x2 - x1, y2 - y1
    assert (keypoints[..., 0] >= x1 - w).all() and (
        keypoints[..., 0] <= x2 + w).all()
    assert (keypoints[..., 1] >= y1 - h).all() and (
        keypoints[..., 1] <= y2 + h).all()
    assert isinstance(by_task['count'].pred_count, int)
    assert isinstance(by_task['vqa'].pred_text, str)


def test_counting_counts_confident_peaks(built):
    model, _, _ = built
    from mmdet.structures import DetDataSample
    heat = torch.full((1, 1, 16, 16), -8.0)
    peaks = [(2, 3), (5, 9), (12, 12), (8, 1), (14, 6)]
    for y, x in peaks:
        heat[0, 0, y, x] = 4.0  # sigmoid 0.98
    heat[0, 0, 0, 15] = -2.0  # a weak peak (sigmoid 0.12) is not counted
    preds = dict(heatmap=heat, wh=torch.ones(1, 2, 16, 16))
    sample = DetDataSample(metainfo=dict(
        task='count', img_shape=(128, 128), prompts=['star'],
        prompt_labels=[3]))
    model._decode('count', preds, sample, sample.metainfo, None, 0,
                  (128, 128), rescale=False)
    assert sample.pred_count == len(peaks)
    assert set(sample.pred_instances.label_names) == {'star'}


@pytest.mark.parametrize('token, expected', [('[SEG]', 'seg'),
                                             ('[DET]', 'det'),
                                             ('[POINT]', 'pose'),
                                             (None, 'text'),
                                             ('[SEG] without [LOC]', 'text')])
def test_instruction_routed_by_generated_task_token(built, token, expected):
    model, _, val_set = built
    model.eval()
    lmm = model.backbone
    conv = lmm.conversation
    answer = conv._text(' Sure, the location is') + [lmm.loc_token_id]
    if token is None:
        answer = conv._text(' There are three shapes.')
    elif token.endswith('without [LOC]'):
        # as the tiny all-task model once answered "Find every cross."
        answer = conv._text(' Sure, the location is') + [
            conv.token_id('[REFSEG]')
        ] + conv._text('. The task output is') + [conv.token_id('[SEG]')]
    else:
        answer += conv._text('. The task output is') + [conv.token_id(token)]
    has_loc = lmm.loc_token_id in answer
    loc_state = torch.randn(lmm.text_dim)
    sample = val_set[0]
    sample['data_samples'].set_metainfo(
        dict(task='instruction', prompts=['Where are the circles?'],
             prompt_labels=[0]))
    original = lmm.generate
    lmm.generate = lambda *args, **kwargs: [
        dict(ids=answer, loc_state=loc_state if has_loc else None)
    ]
    try:
        with torch.no_grad():
            (out, ) = model.test_step(pseudo_collate([sample]))
    finally:
        lmm.generate = original
    assert out.pred_task == expected
    assert out.pred_text == lmm.tokenizer.decode(answer).strip()
    if expected == 'text':
        assert 'pred_instances' not in out
    elif expected == 'pose':
        assert out.pred_instances.keypoints.shape == (1, 1, 2)
    else:
        assert len(out.pred_instances.bboxes) > 0
        assert ('masks' in out.pred_instances) == (expected == 'seg')


def test_generated_loc_state_matches_the_forward_pass(built):
    """The [LOC] state of a generated answer is the one training shapes."""
    model, _, _ = built
    from lumen_mm.models.backbones.conversation import TokenizedPrompt
    lmm = model.backbone.eval()
    embeds, _ = lmm.encode_images(torch.randn(1, 3, 128, 128))
    prompt = lmm.conversation.instruction_prompt('find the star')

    def say_loc(module, inputs, logits):  # make the model say [LOC]
        logits = logits.clone()
        logits[..., lmm.loc_token_id] += 1e4
        return logits

    with torch.no_grad():
        hook = lmm.hf_model.lm_head.register_forward_hook(say_loc)
        try:
            (answer, ) = lmm.generate(embeds, [0], [prompt], 3)
        finally:
            hook.remove()
        ids = prompt.input_ids + answer['ids']
        ref = lmm.forward_prompts(
            embeds, [0],
            [TokenizedPrompt(ids, [-100] * len(ids), prompt.prefix_len)],
            with_lm_loss=False)
    assert answer['ids'][0] == lmm.loc_token_id
    assert torch.allclose(ref.loc_states[0], answer['loc_state'],
                          atol=1e-5)


def test_all_tasks_through_the_runner(all_cfg):
    from mmengine.runner import Runner
    cfg = copy.deepcopy(all_cfg)
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = 2
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.val_loop.run()
    for key in ('shapes_det/coco/bbox_mAP_50', 'shapes_seg/coco/segm_mAP_50',
                'shapes_ground/grounding/acc@0.5', 'shapes_count/count/mae',
                'shapes_pose/coco/AP', 'shapes_vqa/vqa/accuracy'):
        assert key in metrics, sorted(metrics)
    assert any(k.startswith('shapes_refseg/') for k in metrics)


def test_make_shapes_config_trains_under_bfloat16(shapes_root, tmp_path):
    """The `make shapes` config's steps run under bfloat16 autocast through
    mmengine's Runner, with finite losses and float32 weights."""
    from mmengine.runner import Runner
    cfg = _shrink(tiny_config(HIGH_RES_CONFIG, shapes_root, tmp_path))
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.update(val_dataloader=None, val_evaluator=None, val_cfg=None)
    runner = Runner.from_cfg(cfg)
    dtypes = []
    runner.model.neck.register_forward_hook(
        lambda module, args, out: dtypes.append(out['heatmap'].dtype))
    runner.train()
    assert type(runner.optim_wrapper).__name__ == 'CpuAmpOptimWrapper'
    assert dtypes and set(dtypes) == {torch.bfloat16}
    assert torch.isfinite(torch.tensor(
        runner.message_hub.get_scalar('train/loss').current()))
    assert {p.dtype for p in runner.model.parameters()} == {torch.float32}


def test_aligner_on_sam_features(all_cfg, built):
    """Table 3c: the aligner reads SAM's embeddings; the heatmap follows
    SAM's grid and the boxes its stride."""
    from mmdet.registry import MODELS
    _, train_set, _ = built
    cfg = copy.deepcopy(all_cfg.model)
    cfg.aligner_features = 'sam'
    torch.manual_seed(0)
    model = MODELS.build(cfg)
    batch = pseudo_collate([train_set.datasets['det'][0]])
    data = model.data_preprocessor(batch, training=True)
    preds = model._forward(**data)
    # the tiny SAM: 128 px, patch 8; the aligner reads each patch out as
    # upsample x upsample cells
    cells = 128 // 8 * model.neck.upsample
    assert preds['heatmap'].shape[-2:] == (cells, cells)
    assert model.stride == 128 / cells
    losses = model.loss(**data)
    assert torch.isfinite(sum(losses.values()))
    with pytest.raises(ValueError, match='mask_head'):
        MODELS.build(dict(cfg, mask_head=None))
