"""The tiny Lumen end to end: data -> loss/backward -> predict -> Runner."""
import copy

import pytest
import torch
from mmengine.dataset import pseudo_collate

# mmdet's ResNet cut to its stem and first stage (stride 4), 8 channels: the
# aligner's additional high-resolution encoder
TINY_RESNET = dict(
    type='ResNet', depth=18, num_stages=1, strides=(1, ), dilations=(1, ),
    out_indices=(0, ), base_channels=8, stem_channels=8, norm_eval=False)


def _build(cfg):
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS, MODELS
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(copy.deepcopy(cfg.model))
    train_set = DATASETS.build(copy.deepcopy(cfg.train_dataloader.dataset))
    val_set = DATASETS.build(copy.deepcopy(cfg.val_dataloader.dataset))
    return model, train_set, val_set


@pytest.fixture
def built(tiny_cfg):
    return _build(tiny_cfg)


def test_forward_backward_every_task(built):
    model, train_set, _ = built
    tasks = [train_set.task_of(i) for i in range(len(train_set))]
    assert {'det', 'ground'} <= set(tasks)
    batch = pseudo_collate([train_set[i] for i in range(4)])
    data = model.data_preprocessor(batch, training=True)
    losses = model.loss(**data)
    assert set(losses) == {'loss_heatmap', 'loss_wh', 'loss_lm'}
    total = sum(losses.values())
    assert torch.isfinite(total)
    total.backward()
    aligner_grad = model.neck.text_proj[0].weight.grad
    vision_grad = model.backbone.hf_model.model.vision_tower \
        .embeddings.patch_embedding.weight.grad
    assert aligner_grad.abs().sum() > 0 and vision_grad.abs().sum() > 0


def test_loc_words_loss_trains_the_llm_only(tiny_cfg):
    tiny_cfg.model.loc_words_loss = dict(type='LocWordsLoss')
    model, train_set, _ = _build(tiny_cfg)
    batch = pseudo_collate([train_set[i] for i in range(4)])
    losses = model.loss(**model.data_preprocessor(batch, training=True))
    assert losses['loss_loc_words'] > 0
    losses['loss_loc_words'].backward()
    llm = model.backbone.hf_model.model.language_model
    assert llm.layers[0].self_attn.q_proj.weight.grad.abs().sum() > 0
    assert model.loc_words_loss.probe.weight.grad.abs().sum() > 0
    assert model.neck.text_proj[0].weight.grad is None


def test_predict_boxes_in_image_and_labels_mapped(built):
    model, _, val_set = built
    model.eval()
    det_sample = val_set[0]
    ground_index = val_set.cumulative_sizes[0]
    ground_sample = val_set[ground_index]
    batch = pseudo_collate([det_sample, ground_sample])
    with torch.no_grad():
        det, ground = model.test_step(batch)
    h, w = det.ori_shape
    boxes = det.pred_instances.bboxes
    assert len(boxes) <= 100 and len(boxes) > 0
    assert set(det.pred_instances.labels.tolist()) <= set(range(6))
    num_sentences = len(ground.metainfo['prompts'])
    assert len(ground.pred_instances) == num_sentences
    assert ground.pred_instances.labels.tolist() == list(range(num_sentences))
    for b in (boxes, ground.pred_instances.bboxes):
        assert torch.isfinite(b).all()
        assert (b[:, 0] > -w).all() and (b[:, 2] < 2 * w).all()


def test_image_without_objects_gives_finite_losses(built):
    model, train_set, _ = built
    from mmdet.structures.bbox import HorizontalBoxes
    sample = train_set[0]
    data_sample = sample['data_samples']
    gt = data_sample.gt_instances
    data_sample.gt_instances = gt[gt.labels < 0]  # drop every object
    data_sample.gt_instances.bboxes = HorizontalBoxes(torch.zeros(0, 4))
    data = model.data_preprocessor(pseudo_collate([sample]), training=True)
    losses = model.loss(**data)
    assert all(torch.isfinite(v) for v in losses.values())


def test_description_with_special_strings_is_text(built):
    model, train_set, _ = built
    sample = train_set[0]
    sample['data_samples'].set_metainfo(
        dict(task='ground', prompts=['the [LOC] <image> thing'],
             prompt_labels=[0]))
    data = model.data_preprocessor(pseudo_collate([sample]), training=True)
    losses = model.loss(**data)
    assert all(torch.isfinite(v) for v in losses.values())


def test_two_iterations_through_the_runner(tiny_cfg):
    from mmengine.runner import Runner
    cfg = tiny_cfg
    cfg.train_cfg.update(max_iters=2, val_interval=2)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    runner = Runner.from_cfg(cfg)
    runner.train()
    assert runner.iter == 2
    metrics = runner.val_loop.run()
    assert 'shapes_det/coco/bbox_mAP_50' in metrics
    assert 'shapes_ground/grounding/acc@0.5' in metrics


def _predict_with_heatmaps(model, sample):
    """The model's prediction for one dataset sample, heatmaps included."""
    model.eval()
    sample['data_samples'].set_metainfo(dict(return_heatmaps=True))
    with torch.no_grad():
        det, = model.test_step(pseudo_collate([sample]))
    return det


def test_upsampled_readout_trains_and_predicts_at_half_stride(tiny_cfg):
    tiny_cfg.model.neck.upsample = 2
    model, train_set, val_set = _build(tiny_cfg)
    assert model.stride == model.backbone.patch_size / 2
    batch = pseudo_collate([train_set[i] for i in range(4)])
    losses = model.loss(**model.data_preprocessor(batch, training=True))
    assert all(torch.isfinite(v) for v in losses.values())
    det = _predict_with_heatmaps(model, val_set[0])
    grid = model.backbone.aligner_image_size // model.backbone.patch_size
    assert det.heatmaps.shape[-2:] == (2 * grid, 2 * grid)
    h, w = det.ori_shape
    boxes = det.pred_instances.bboxes
    assert len(boxes) and (boxes[:, 2] <= w + 1e-3).all()
    assert (boxes[:, 3] <= h + 1e-3).all()


def test_high_res_encoder_trains_with_the_aligner(tiny_cfg):
    """mmdet's ResNet stem (stride 4) as the aligner's additional encoder:
    the heatmap comes out at its grid and its loss reaches the encoder."""
    tiny_cfg.model.neck.upsample = 2
    tiny_cfg.model.high_res_encoder = copy.deepcopy(TINY_RESNET)
    model, train_set, val_set = _build(tiny_cfg)
    assert model.neck.high_res_dim == 8
    batch = pseudo_collate([train_set[i] for i in range(4)])
    losses = model.loss(**model.data_preprocessor(batch, training=True))
    losses['loss_heatmap'].backward()
    # its corrections start at zero, so the encoder learns once they move
    assert model.neck.high_res_out.weight.grad.abs().sum() > 0
    torch.nn.init.normal_(model.neck.high_res_out.weight)
    model.zero_grad()
    losses = model.loss(**model.data_preprocessor(batch, training=True))
    losses['loss_heatmap'].backward()
    stem = model.high_res_encoder.conv1.weight.grad
    assert stem is not None and stem.abs().sum() > 0
    det = _predict_with_heatmaps(model, val_set[0])
    grid = model.backbone.aligner_image_size // model.backbone.patch_size
    assert det.heatmaps.shape[-2:] == (2 * grid, 2 * grid)
    assert len(det.pred_instances.bboxes)


def test_high_res_encoder_needs_an_aligner_that_reads_it(tiny_cfg):
    tiny_cfg.model.neck = dict(type='TransformerDenseAligner', embed_dim=32,
                               depth=1, num_heads=2, mlp_dim=64)
    tiny_cfg.model.high_res_encoder = copy.deepcopy(TINY_RESNET)
    with pytest.raises(ValueError, match='ConvDenseAligner'):
        _build(tiny_cfg)
