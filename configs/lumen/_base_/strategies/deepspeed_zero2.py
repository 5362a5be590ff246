# DeepSpeed ZeRO-2 through mmengine's FlexibleRunner: optimizer states and
# gradients are sharded over the GPUs, bf16 as the paper's run. Needs
# `pip install deepspeed`; launch with tools/dist_train.sh as usual. The
# config that uses it sets optim_wrapper to DeepSpeedOptimWrapper.
# The config that uses this file sets runner_type='FlexibleRunner' (its
# other base, default_runtime.py, names LumenRunner, and two bases may not
# set the same key).
strategy = dict(
    type='DeepSpeedStrategy',
    zero_optimization=dict(
        stage=2,
        allgather_partitions=True,
        allgather_bucket_size=5e8,
        reduce_scatter=True,
        reduce_bucket_size=5e8,
        overlap_comm=True,
        contiguous_gradients=True),
    bf16=dict(enabled=True),
    gradient_clipping=1.0,
    # DeepSpeed's own trainable-only checkpoints (TrainableCheckpointHook
    # serves mmengine's Runner)
    exclude_frozen_parameters=True)
