"""2-process DDP (gloo, CPU) through tools/dist_train.sh: both ranks train on
different samples and end with the same weights."""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from conftest import REPO

# Registered in each rank through custom_imports: dumps that rank's weights.
PROBE = '''
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook


@HOOKS.register_module()
class DumpRankWeightsHook(Hook):
    def __init__(self, out_dir):
        self.out_dir = out_dir

    def before_train(self, runner):
        self._dump(runner, 'init')

    def after_train(self, runner):
        self._dump(runner, 'final')

    def _dump(self, runner, stage):
        model = runner.model
        torch.save(dict(
            wrapper=type(model).__name__,
            world_size=runner.world_size,
            state={k: v.detach().clone() for k, v in
                   model.module.state_dict().items()}),
            f'{self.out_dir}/{stage}_rank{runner.rank}.pth')
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_process_ddp_ranks_agree(tiny_cfg, tmp_path):
    (tmp_path / 'ddp_probe.py').write_text(PROBE)
    cfg = tiny_cfg
    cfg.custom_imports = dict(imports=['lumen_mm', 'ddp_probe'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [dict(type='DumpRankWeightsHook',
                             out_dir=str(tmp_path))]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=3,
                         val_interval=100)
    cfg.default_hooks.checkpoint.interval = 100
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.randomness = dict(seed=0)
    # CLIP's post_layernorm (pooled output) never gets a gradient
    cfg.find_unused_parameters = True
    cfg_file = tmp_path / 'ddp_tiny.py'
    cfg.dump(str(cfg_file))

    env = dict(os.environ,
               PORT=str(_free_port()),
               OMP_NUM_THREADS='1',
               PYTHONPATH=f'{tmp_path}{os.pathsep}{REPO}',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}'
               f'{os.environ["PATH"]}')
    proc = subprocess.run(
        ['bash', str(REPO / 'tools/dist_train.sh'), str(cfg_file), '2',
         '--work-dir', str(tmp_path / 'work')],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    first_error = proc.stderr[proc.stderr.find('Traceback'):]
    assert proc.returncode == 0, first_error[:4000]

    init = torch.load(tmp_path / 'init_rank0.pth', weights_only=False)
    ranks = [torch.load(tmp_path / f'final_rank{r}.pth', weights_only=False)
             for r in (0, 1)]
    assert all(r['wrapper'] == 'MMDistributedDataParallel' for r in ranks)
    assert all(r['world_size'] == 2 for r in ranks)
    a, b = ranks[0]['state'], ranks[1]['state']
    assert a.keys() == b.keys()
    # batch-norm statistics are each rank's own (mmengine does not broadcast
    # buffers; rank 0 saves the checkpoints): every weight must agree
    stats = ('running_mean', 'running_var', 'num_batches_tracked')
    weights = [k for k in a if not k.endswith(stats)]
    assert all(torch.equal(a[k], b[k]) for k in weights)
    # and they trained: the aligner moved away from its initial weights
    name = 'neck.text_proj.0.weight'
    assert not torch.equal(a[name], init['state'][name])
