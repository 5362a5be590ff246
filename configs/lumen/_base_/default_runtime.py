_base_ = 'mmdet::_base_/default_runtime.py'

custom_imports = dict(imports=['lumen_mm'], allow_failed_imports=False)
default_hooks = dict(
    logger=dict(type='LoggerHook', interval=20),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=400,
                    max_keep_ckpts=3))
log_processor = dict(by_epoch=False)
# TensorBoard: uncomment to log losses, metrics and images there as well as
# to the work dir (needs `pip install tensorboard`, which requirements/ does
# not install); then `tensorboard --logdir work_dirs/<config>`.
# visualizer = dict(vis_backends=[
#     dict(type='LocalVisBackend'), dict(type='TensorboardVisBackend')])
