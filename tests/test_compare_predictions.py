"""scripts/compare_predictions.py: the check that a refactor keeps a
checkpoint's predictions finds every kind of change."""
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / 'scripts/compare_predictions.py'


def _dump(path, samples):
    with open(path, 'wb') as f:
        pickle.dump(samples, f)
    return str(path)


def _samples():
    det = dict(img_path='a.png', task='det', pred_instances=dict(
        bboxes=np.array([[1., 2., 3., 4.]]), scores=np.array([.9]),
        labels=np.array([2]), masks=[{'size': [4, 4], 'counts': b'abc'}]))
    vqa = dict(img_path='b.png', task='vqa', pred_text='a star',
               pred_task='text')
    return [det, vqa]


def _run(tmp_path, new):
    old = _dump(tmp_path / 'old.pkl', _samples())
    return subprocess.run(
        [sys.executable, str(SCRIPT), old, _dump(tmp_path / 'new.pkl', new)],
        capture_output=True, text=True)


def test_same_predictions_pass_and_new_fields_are_listed(tmp_path):
    new = _samples()
    new[0]['pred_instances']['label_names'] = ['star']
    new[0]['pred_instances']['bboxes'] += 1e-7
    out = _run(tmp_path, new)
    assert out.returncode == 0, out.stdout
    assert "['label_names']" in out.stdout


@pytest.mark.parametrize('change, message', [
    (lambda s: s[0]['pred_instances']['bboxes'].__iadd__(0.01), 'bboxes'),
    (lambda s: s[0]['pred_instances'].update(labels=np.array([3])),
     'labels'),
    (lambda s: s[0]['pred_instances'].update(
        masks=[{'size': [4, 4], 'counts': b'abd'}]), 'masks'),
    (lambda s: s[0]['pred_instances'].pop('scores'), 'scores is gone'),
    (lambda s: s[1].update(pred_text='a cross'), 'pred_text'),
    (lambda s: s.pop(), 'samples against'),
])
def test_each_difference_fails(tmp_path, change, message):
    new = _samples()
    change(new)
    out = _run(tmp_path, new)
    assert out.returncode == 1 and message in out.stdout, out.stdout
