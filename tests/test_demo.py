"""tools/demo.py and the Lumen visualizer write the pictures they promise."""
import numpy as np
import pytest
import torch
from mmdet.structures import DetDataSample
from mmengine.structures import InstanceData
from PIL import Image

from conftest import SHAPES_CONFIG, tiny_config

CLASSES = ('circle', 'square', 'triangle', 'star', 'hexagon', 'cross')


@pytest.fixture(scope='module')
def tiny_checkpoint(shapes_root, tmp_path_factory):
    """A tiny random Lumen's config file and checkpoint (state dict + class
    names, as a Runner checkpoint holds them)."""
    from mmdet.registry import MODELS
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    root = tmp_path_factory.mktemp('demo_model')
    cfg = tiny_config(SHAPES_CONFIG, shapes_root, root / 'work_dir')
    config = root / 'tiny.py'
    cfg.dump(str(config))
    init_default_scope('mmdet')
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    checkpoint = root / 'tiny.pth'
    torch.save(
        dict(
            state_dict=model.state_dict(),
            meta=dict(dataset_meta=dict(classes=CLASSES))), checkpoint)
    return str(config), str(checkpoint)


def test_checkpoint_weights_and_classes_are_loaded(tiny_checkpoint):
    from lumen_mm.apis import LumenInferencer
    config, checkpoint = tiny_checkpoint
    torch.manual_seed(1)  # another random init, replaced by the checkpoint
    inferencer = LumenInferencer(config, checkpoint, show_progress=False)
    saved = torch.load(checkpoint, weights_only=True)['state_dict']
    loaded = inferencer.model.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in saved.items())
    assert inferencer.dataset_meta['classes'] == CLASSES
    sample = inferencer(np.zeros((20, 30, 3), np.uint8), task='det')
    assert sample.prompts == list(CLASSES)


def _run(argv, capsys):
    from lumen_mm.apis.demo import main
    outputs = main(argv)
    return outputs, capsys.readouterr().out


def test_demo_writes_pictures_for_a_photo(tiny_checkpoint, tmp_path, capsys):
    config, checkpoint = tiny_checkpoint
    rng = np.random.default_rng(0)
    photo = tmp_path / 'photo.jpg'
    Image.fromarray(rng.integers(0, 255, (90, 160, 3), np.uint8)).save(photo)
    out_dir = tmp_path / 'out'
    outputs, printed = _run([
        str(photo), '--task', 'det', '--config', config, '--checkpoint',
        checkpoint, '--out-dir', str(out_dir), '--score-thr', '0'
    ], capsys)
    pred = np.asarray(Image.open(outputs['pred']))
    assert pred.shape[:2] == (90, 160)
    # boxes were drawn: the picture differs from the photo
    assert (pred[..., :3] != np.asarray(Image.open(photo))).any()
    # the classes come from the checkpoint's meta
    assert 'task: det' in printed and 'instances with score > 0' in printed
    assert any(name in printed for name in CLASSES)
    heat = np.asarray(Image.open(outputs['heatmap']))
    # 6 panels of 90 x 160 in 2 rows of 3
    assert heat.shape[:2] == (180, 480)
    assert str(out_dir / 'photo_heatmap.png') in printed


def test_demo_grounding_on_a_shapes_image(tiny_checkpoint, shapes_root,
                                          tmp_path, capsys):
    config, checkpoint = tiny_checkpoint
    image = sorted((shapes_root / 'val').glob('*.png'))[0]
    outputs, printed = _run([
        str(image), '--task', 'ground', '--text', 'the red circle',
        '--config', config, '--checkpoint', checkpoint, '--out-dir',
        str(tmp_path), '--score-thr', '0'
    ], capsys)
    assert 'the red circle:' in printed
    assert Image.open(outputs['pred']).size == Image.open(image).size


def test_demo_pose_on_given_people(tiny_checkpoint, tmp_path, capsys):
    config, checkpoint = tiny_checkpoint
    photo = tmp_path / 'people.png'
    Image.new('RGB', (120, 90), 'white').save(photo)
    args = [str(photo), '--task', 'pose', '--config', config,
            '--checkpoint', checkpoint, '--out-dir', str(tmp_path)]
    outputs, printed = _run(
        args + ['--person-bboxes', '10', '20', '40', '80', '60', '5', '90',
                '45'], capsys)
    assert printed.count('keypoints:') == 2
    assert Image.open(outputs['pred']).size == (120, 90)
    with pytest.raises(SystemExit):  # not four numbers per person
        _run(args + ['--person-bboxes', '10', '20', '40'], capsys)


def test_demo_needs_an_instruction_or_a_task(tmp_path):
    from lumen_mm.apis.demo import main
    image = tmp_path / 'x.png'
    Image.new('RGB', (8, 8)).save(image)
    with pytest.raises(SystemExit):
        main([str(image), '--config', 'c.py', '--out-dir', str(tmp_path)])


def test_visualizer_draws_keypoints_skeleton_and_masks():
    from lumen_mm.visualization import LumenLocalVisualizer, skeleton_meta
    meta = skeleton_meta(['left shoulder', 'left_elbow', 'left wrist', 'tail'])
    # COCO links shoulder-elbow and elbow-wrist; 'tail' is not a COCO point
    assert meta['skeleton_links'] == [(0, 1), (1, 2)]
    assert tuple(meta['keypoint_colors'][3]) == (128, 128, 128)

    image = np.full((60, 80, 3), 255, np.uint8)
    sample = DetDataSample(
        metainfo=dict(
            task='pose',
            prompts=['left shoulder', 'left elbow', 'left wrist'],
            prompt_labels=[0, 1, 2]))
    keypoints = torch.tensor([[[10., 10.], [40., 10.], [40., 50.]]])
    sample.pred_instances = InstanceData(
        bboxes=torch.tensor([[5., 5., 45., 55.]]),
        scores=torch.tensor([0.9]),
        labels=torch.tensor([0]),
        keypoints=keypoints,
        keypoint_scores=torch.tensor([[0.9, 0.9, 0.1]]))
    vis = LumenLocalVisualizer(name='test_pose_vis')
    vis.add_datasample('pose', image, sample, draw_gt=False)
    drawn = vis.get_image()
    # the shoulder-elbow link is drawn; the weak wrist and its link are not
    assert (drawn[10, 25] != 255).any()
    assert (drawn[50, 40] == 255).all() and (drawn[30, 40] == 255).all()

    mask = torch.zeros(1, 60, 80, dtype=torch.bool)
    mask[0, 30:50, 50:70] = True
    seg = DetDataSample(metainfo=dict(task='seg', prompts=['blob'],
                                      prompt_labels=[0]))
    seg.pred_instances = InstanceData(
        bboxes=torch.tensor([[50., 30., 70., 50.]]),
        scores=torch.tensor([0.8]),
        labels=torch.tensor([0]),
        masks=mask)
    vis.add_datasample('seg', image, seg, draw_gt=False)
    drawn = vis.get_image()
    assert (drawn[40, 60] != 255).any() and (drawn[5, 5] == 255).all()


def test_heatmap_panels_keep_absolute_scores():
    from lumen_mm.visualization import LumenLocalVisualizer
    image = np.zeros((120, 120, 3), np.uint8)
    heatmaps = torch.zeros(2, 4, 4)
    heatmaps[1, 2, 2] = 0.9  # only prompt 1 finds something
    sample = DetDataSample(
        metainfo=dict(prompts=['absent', 'present'], prompt_labels=[0, 1],
                      img_shape=(120, 120), ori_shape=(120, 120),
                      batch_input_shape=(120, 120)))
    sample.heatmaps = heatmaps
    vis = LumenLocalVisualizer(name='test_heat_vis')
    grid = vis.draw_heatmaps(image, sample, alpha=1.0)
    assert grid.shape == (120, 240, 3)
    present, absent = grid[:, :120], grid[:, 120:]  # highest peak first
    # jet: 0 is dark blue everywhere in the absent panel (below its title)
    assert (absent[30:, :, 2] > absent[30:, :, 0]).all()
    assert present[75, 75, 0] > 200  # the 0.9 peak is red
