"""Shared fixtures: a tiny Lumen-Shapes set with its tokenizer, tiny configs
and the tiny model of a paper-scale config."""
import copy
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHAPES_CONFIG = REPO / 'configs/lumen/shapes/lumen_tiny_shapes_det_ground.py'

# Keep the 2-core machine responsive: tests are small.
os.environ.setdefault('OMP_NUM_THREADS', '2')


@pytest.fixture(autouse=True)
def mmdet_default_scope():
    """Registries resolve in mmdet's scope, whatever default scope an earlier
    test's Runner left behind."""
    from mmengine.registry import DefaultScope
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield


@pytest.fixture(scope='session')
def shapes_root(tmp_path_factory) -> Path:
    """12 train / 6 val Lumen-Shapes images, annotations and tokenizer,
    with their questions, and 6 train / 4 val pose and counting images."""
    from lumen_mm.datasets.shapes import make_shapes
    root = tmp_path_factory.mktemp('lumen_shapes')
    make_shapes(str(root), seed=0, num_train=12, num_val=6, progress=False,
                num_pose_train=6, num_pose_val=4, num_count_train=6,
                num_count_val=4)
    return root


@pytest.fixture(scope='session')
def tokenizer_dir(shapes_root) -> str:
    return str(shapes_root / 'tokenizer')


def retarget(cfg, old: str, new: str):
    """Replace a path prefix in every string of a config (data_root...)."""
    def walk(node):
        if isinstance(node, dict):
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, (list, tuple)):
            return type(node)(walk(v) for v in node)
        if isinstance(node, str) and node.startswith(old):
            return new + node[len(old):]
        return node
    for key in list(cfg.keys()):
        cfg[key] = walk(cfg[key])
    return cfg


def tiny_config(path, shapes_root, work_dir):
    """A Lumen-Shapes config on the tiny test data, made smaller still."""
    from mmengine.config import Config
    cfg = Config.fromfile(str(path))
    cfg = retarget(cfg, 'data/lumen_shapes', str(shapes_root))
    backbone = cfg.model.backbone
    backbone.vision_config.update(hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=1, num_attention_heads=2)
    backbone.text_config.update(hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2)
    cfg.model.neck.update(embed_dim=32, num_convs=1)
    if 'dilations' in cfg.model.neck:
        cfg.model.neck.dilations = (2, )
    if cfg.model.neck.type == 'TransformerDenseAligner':
        cfg.model.neck.update(depth=1, num_heads=2, mlp_dim=64)
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[loader].update(batch_size=2, num_workers=0,
                           persistent_workers=False)
    cfg.train_dataloader.dataset.num_samples = 8
    cfg.work_dir = str(work_dir)
    return cfg


def tiny_model(cfg, tokenizer_dir: str) -> dict:
    """The config's model with the same structure at toy sizes: no weights,
    CLIP 2 x 32, LLM 1 x 32, aligner 32 wide, a tiny SAM."""
    model = copy.deepcopy(cfg.model)
    backbone = model.backbone
    backbone.update(pretrained=None, tokenizer=tokenizer_dir)
    backbone.vision_config.update(hidden_size=32, intermediate_size=64,
                                  num_hidden_layers=2, num_attention_heads=2)
    backbone.text_config.update(hidden_size=32, intermediate_size=64,
                                num_hidden_layers=1, num_attention_heads=2,
                                num_key_value_heads=2, vocab_size=512)
    model.neck.update(embed_dim=32)
    if model.neck.type == 'TransformerDenseAligner':
        model.neck.update(depth=1, num_heads=2, mlp_dim=64)
    if model.get('mask_head'):
        model.mask_head = dict(type='SamMaskHead', sam_type='tiny',
                               tiny=dict(img_size=128))
    return model


@pytest.fixture
def tiny_cfg(shapes_root, tmp_path):
    return tiny_config(SHAPES_CONFIG, shapes_root, tmp_path / 'work_dir')
