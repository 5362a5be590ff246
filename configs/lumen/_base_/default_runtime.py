_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['lumen_mm'], allow_failed_imports=False)
# A checkpoint that does not fit the model (missing or unexpected keys,
# shapes, another tokenizer) is an error; `--cfg-options strict_load=False`
# loads it with a warning (LumenCheckpointHook below).
strict_load = True
# mmengine's Runner whose data-loader workers end with the run and whose
# --resume takes the newest intact checkpoint (lumen_mm/engine/runner.py);
# named here so that mmdet's own tools build it too.
runner_type = 'LumenRunner'
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    # mmengine's hook with atomic saves that record the tokenizer's
    # fingerprint, the old checkpoint deleted only once the new one is
    # complete, and the fit checked on load (lumen_mm/engine/checkpoint.py)
    checkpoint=dict(type='LumenCheckpointHook', by_epoch=False, interval=400,
                    max_keep_ckpts=3),
    # tools/test.py --show-dir (mmdet's or ours): one drawing per test
    # sample, under its task (mmdet's hook names them by image file only)
    visualization=dict(type='LumenVisualizationHook'))
# Subnormal values in the backward pass slow CPU training down as the model
# fits (docs/train_test.md): flush them to zero for the run. A config that
# sets its own custom_hooks lists this one again to keep it.
custom_hooks = [dict(type='FlushDenormalHook')]
# Each log line: the mean over the iterations since the previous one (mmdet's
# default window of 50 spread one bad batch over three lines).
log_processor = dict(by_epoch=False, window_size=20)
# TensorBoard: losses, learning rate, metrics and drawn images go to
# <work_dir>/<timestamp>/vis_data/ as event files beside the local ones; view
# them with `tensorboard --logdir work_dirs/<config>`. Off for one run:
# `LUMEN_TENSORBOARD=0 python tools/train.py ...` (mmengine reads the
# environment variables a config names in {{$...}} fields); off in a config:
# `visualizer = dict(vis_backends=[dict(type='LocalVisBackend')])`.
tensorboard = '{{$LUMEN_TENSORBOARD:1}}' != '0'
# Boxes named by their prompts, keypoints with their skeleton
visualizer = dict(
    type='LumenLocalVisualizer',
    vis_backends=[dict(type='LocalVisBackend')] +
    ([dict(type='TensorboardVisBackend')] if tensorboard else []))
# One seed for every run: the same data order and initial weights, so a
# Lumen-Shapes number of the README comes back when rerun, up to the last bits
# of multi-threaded CPU kernels (add deterministic=True for bit-exact runs;
# `--cfg-options randomness.seed=N` draws another run).
randomness = dict(seed=0)
