"""The FSDP strategy of the paper configs (configs/lumen/_base_/strategies/
fsdp.py) on 2 CPU processes (gloo) through tools/dist_train.sh: the tiny
Lumen with the paper's LoRA, frozen CLIP, gradient checkpointing and bf16
mixed precision, sharded into several FSDP units; 2 iterations, a
trainable-only checkpoint, a resume from it. And the wrap policy on the 7B
model's module tree (meta tensors)."""
import math
import os
import socket
import subprocess
import sys
from functools import partial
from pathlib import Path

import torch
from mmengine.config import Config

from conftest import REPO

FSDP_CONFIG = (REPO / 'configs/lumen/'
               'lumen_llava-v1.1-7b_lora_448_multitask_50k_fsdp.py')
PAPER_FSDP = (REPO / 'configs/lumen/'
              'lumen_llava-v1.1-7b_lora_448_multitask_50k_fsdp.py')

# Registered in each rank through custom_imports: what each rank saw.
PROBE = '''
import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook
from torch.distributed.fsdp import FullyShardedDataParallel as FSDP


@HOOKS.register_module()
class RecordFSDPRankHook(Hook):
    def __init__(self, out_dir):
        self.out_dir = out_dir
        self.losses, self.grad_norms = [], []

    def before_train(self, runner):
        # collectives: every rank takes part, rank 0 gets the full dicts
        self.start = dict(
            iter=runner.iter,
            state=runner.strategy.model_state_dict(),
            optimizer=FSDP.optim_state_dict(
                runner.model, runner.optim_wrapper.optimizer))

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.losses.append(float(outputs['loss']))
        self.grad_norms.append(
            runner.message_hub.get_scalar('train/grad_norm').current())

    def after_train(self, runner):
        model = runner.model
        torch.save(dict(
            wrapper=type(model).__name__,
            world_size=runner.world_size,
            units={name.replace('_fsdp_wrapped_module.', ''):
                   type(m.module).__name__
                   for name, m in model.named_modules()
                   if isinstance(m, FSDP)},
            start=self.start,
            end=dict(iter=runner.iter,
                     state=runner.strategy.model_state_dict()),
            losses=self.losses, grad_norms=self.grad_norms),
            f'{self.out_dir}/rank{runner.rank}_iter{runner.iter}.pth')
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def _fsdp_tiny_config(cfg, probe_dir):
    """The tiny config with the paper's FSDP strategy and the 7B's training
    set-up (LoRA, frozen CLIP, gradient checkpointing, trainable-only
    checkpoints)."""
    fsdp = Config.fromfile(str(FSDP_CONFIG))
    cfg.runner_type = fsdp.runner_type
    cfg.strategy = fsdp.strategy
    # 1e7 wraps nothing of the tiny model: 8000 makes units of its decoder
    # layer, CLIP layer, LM head, trainable-token embedding and aligner
    cfg.strategy.model_wrapper.auto_wrap_policy.min_num_params = 8000
    cfg.model.backbone.update(
        lora=dict(r=4, lora_alpha=8), freeze_vision=True,
        gradient_checkpointing=True)
    cfg.custom_imports = dict(imports=['lumen_mm', 'fsdp_probe'],
                              allow_failed_imports=False)
    cfg.custom_hooks = [
        dict(type='FlushDenormalHook'),
        dict(type='TrainableCheckpointHook'),
        dict(type='RecordFSDPRankHook', out_dir=str(probe_dir))
    ]
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=2,
                         val_interval=100)
    cfg.default_hooks.checkpoint.interval = 2
    cfg.default_hooks.logger.interval = 1
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator'):
        cfg[key] = None
    cfg.randomness = dict(seed=0)
    return cfg


def _dist_train(cfg_file, tmp_path, *args):
    env = dict(os.environ,
               PORT=str(_free_port()),
               OMP_NUM_THREADS='1',
               PYTHONPATH=f'{tmp_path}{os.pathsep}{REPO}',
               PATH=f'{Path(sys.executable).parent}{os.pathsep}'
               f'{os.environ["PATH"]}')
    proc = subprocess.run(
        ['bash', str(REPO / 'tools/dist_train.sh'), str(cfg_file), '2',
         '--work-dir', str(tmp_path / 'work'), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    first_error = proc.stderr[proc.stderr.find('Traceback'):]
    assert proc.returncode == 0, first_error[:4000]


def _ranks(tmp_path, it):
    return [torch.load(tmp_path / f'rank{r}_iter{it}.pth', weights_only=False)
            for r in (0, 1)]


def test_two_process_fsdp_trains_saves_and_resumes(tiny_cfg, tmp_path):
    from mmdet.registry import MODELS

    from lumen_mm.engine import load_trainable_checkpoint, trainable_keys

    (tmp_path / 'fsdp_probe.py').write_text(PROBE)
    cfg = _fsdp_tiny_config(tiny_cfg, tmp_path)
    cfg_file = tmp_path / 'fsdp_tiny.py'
    cfg.dump(str(cfg_file))

    _dist_train(cfg_file, tmp_path)
    ranks = _ranks(tmp_path, 2)
    assert all(r['wrapper'] == 'MMFullyShardedDataParallel' for r in ranks)
    assert all(r['world_size'] == 2 for r in ranks)
    # sharded into units, the embedding with peft's trainable-token layer
    # that reads its weight, never alone
    units = ranks[0]['units']
    lm = 'backbone.llava.base_model.model.model.language_model'
    assert units[f'{lm}.layers.0'] == 'LlamaDecoderLayer'
    assert units[f'{lm}.embed_tokens.token_adapter'] == 'TrainableTokensLayer'
    assert units['neck'] == 'ConvDenseAligner'
    assert 'Embedding' not in units.values()
    # each rank trained on its own samples; the gradient norm is that of the
    # whole gradient, the same on both ranks (mmengine alone clips and logs
    # each rank's shard)
    for r in ranks:
        assert len(r['losses']) == 2 and all(map(math.isfinite, r['losses']))
    assert ranks[0]['losses'] != ranks[1]['losses']
    norm0, norm1 = ranks[0]['grad_norms'], ranks[1]['grad_norms']
    assert all(n > 0 for n in norm0)
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(norm0, norm1))

    # the trainable-only checkpoint: full (unsharded) tensors under the
    # unwrapped model's names, as trained
    ckpt = torch.load(tmp_path / 'work/iter_2.pth', weights_only=False)
    assert ckpt['meta']['trainable_only']
    model = MODELS.build(cfg.model)
    own = model.state_dict()
    keys = trainable_keys(model)
    assert set(ckpt['state_dict']) == keys
    start, end = ranks[0]['start']['state'], ranks[0]['end']['state']
    for k, v in ckpt['state_dict'].items():
        assert v.shape == own[k].shape, k
        assert torch.equal(v, end[k]), k
    # the aligner trained; the frozen CLIP and LLM did not
    name = 'neck.text_proj.0.weight'
    assert not torch.equal(end[name], start[name])
    frozen = [k for k in end if k not in keys]
    assert frozen and all(torch.equal(end[k], start[k]) for k in frozen)
    # it loads strictly into a single-process model of the config
    load_trainable_checkpoint(model, str(tmp_path / 'work/iter_2.pth'))
    assert torch.equal(model.state_dict()[name], ckpt['state_dict'][name])

    # resume: the weights and the optimizer's moments come back, and it
    # trains on
    _dist_train(cfg_file, tmp_path, '--resume',
                str(tmp_path / 'work/iter_2.pth'), '--cfg-options',
                'train_cfg.max_iters=3')
    resumed = _ranks(tmp_path, 3)
    began = resumed[0]['start']
    assert began['iter'] == 2 and resumed[0]['end']['iter'] == 3
    assert began['state'].keys() == end.keys()
    assert all(torch.equal(began['state'][k], end[k]) for k in end)
    moments = ckpt['optimizer']['state']
    assert moments.keys() == began['optimizer']['state'].keys()
    for k, v in moments.items():
        assert torch.equal(began['optimizer']['state'][k]['exp_avg'],
                           v['exp_avg']), k
    for r in resumed:
        assert len(r['losses']) == 1 and math.isfinite(r['losses'][0])


def _wrap_units(module, policy, name=''):
    """The modules FSDP's auto-wrapping makes units of (torch's recursion,
    without wrapping): (names with their classes, numel wrapped)."""
    numel = sum(p.numel() for p in module.parameters())
    if not policy(module=module, recurse=True, nonwrapped_numel=numel):
        return [], 0
    found, wrapped = [], 0
    for child_name, child in module.named_children():
        units, n = _wrap_units(child, policy,
                               f'{name}.{child_name}' if name else child_name)
        found += units
        wrapped += n
    if policy(module=module, recurse=False, nonwrapped_numel=numel - wrapped):
        return found + [(name, type(module).__name__)], numel
    return found, wrapped


def test_paper_wrap_policy_keeps_the_trainable_token_embedding_whole(
        tokenizer_dir):
    """On LLaVA-7B with the paper's LoRA, torch's size-based policy makes a
    unit of the 131M-parameter embedding inside peft's trainable-token
    layer, which reads that weight itself (a shard, under FSDP: the tiny
    model fails with "index_copy_(): ... dimensionality must match"); the
    config's policy wraps the layer with its embedding."""
    from mmdet.registry import MODELS
    from mmengine.registry import FUNCTIONS
    from torch.distributed.fsdp.wrap import size_based_auto_wrap_policy

    cfg = Config.fromfile(str(PAPER_FSDP))
    assert cfg.strategy.type == 'LumenFSDPStrategy'
    policy = dict(cfg.strategy.model_wrapper.auto_wrap_policy)
    min_num_params = policy['min_num_params']
    policy = partial(FUNCTIONS.get(policy.pop('type')), **policy)
    backbone = cfg.model.backbone
    backbone.update(pretrained=None, tokenizer=tokenizer_dir)
    with torch.device('meta'):
        lmm = MODELS.build(backbone)
    embed = ('llava.base_model.model.model.language_model.embed_tokens.'
             'token_adapter')

    plain = dict(_wrap_units(lmm, partial(size_based_auto_wrap_policy,
                                          min_num_params=min_num_params))[0])
    assert plain[f'{embed}.base_layer'] == 'Embedding'

    units = dict(_wrap_units(lmm, policy)[0])
    assert units[embed] == 'TrainableTokensLayer'
    assert 'Embedding' not in units.values()
    # and the 7B is sharded finely: CLIP's 24 layers and the LLM's Linears
    assert list(units.values()).count('CLIPEncoderLayer') == 24
    assert len(units) > 200


def test_aligner_under_fsdp_mixed_precision_takes_one_prompt():
    """FSDP's mixed precision makes a unit of every batch norm: the
    aligner's one-prompt path (running statistics) still recognises it and
    runs it through its own forward. One process, gloo."""
    import torch.distributed as dist
    from torch.distributed.fsdp import FullyShardedDataParallel as FSDP
    from torch.distributed.fsdp import MixedPrecision

    from lumen_mm.engine import fsdp_auto_wrap_policy
    from lumen_mm.models.necks.dense_aligner import ConvDenseAligner

    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:'
                            f'{_free_port()}', rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        aligner = ConvDenseAligner(16, 8, embed_dim=8, num_convs=1,
                                   text_norm_cfg=dict(type='BN1d'))
        # auto-wrapping (by any policy) puts the batch norm apart
        model = FSDP(aligner, device_id='cpu', use_orig_params=True,
                     auto_wrap_policy=fsdp_auto_wrap_policy,
                     mixed_precision=MixedPrecision(
                         param_dtype=torch.bfloat16))
        assert isinstance(model.module.text_norm, FSDP)
        out = model(torch.randn(1, 16), torch.randn(1, 8, 5, 5), [0])
        assert torch.isfinite(out['heatmap'].float()).all()
        assert model.module.text_norm.training  # back in training mode
    finally:
        dist.destroy_process_group()
