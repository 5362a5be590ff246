"""Every Lumen-Shapes config builds its model and datasets (none may rot)."""
import pytest

from conftest import REPO, tiny_config

CONFIGS = sorted((REPO / 'configs/lumen/shapes').glob('*.py'))


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: p.stem)
def test_config_builds(path, shapes_root, tmp_path):
    from mmengine.registry import init_default_scope

    import lumen_mm  # noqa: F401
    from mmdet.registry import DATASETS, MODELS
    cfg = tiny_config(path, shapes_root, tmp_path)
    init_default_scope('mmdet')
    model = MODELS.build(cfg.model)
    assert type(model).__name__ == 'Lumen'
    assert type(model.neck).__name__ == cfg.model.neck.type
    assert len(DATASETS.build(cfg.train_dataloader.dataset)) == 8
    assert len(DATASETS.build(cfg.val_dataloader.dataset)) > 0


def test_the_aligner_ablation_is_a_config():
    names = {p.stem for p in CONFIGS}
    assert {'lumen_tiny_shapes_det_ground',
            'lumen_tiny_shapes_det_ground_transformer'} <= names
