# PyTorch FSDP through mmengine's FlexibleRunner: parameters, gradients and
# optimizer states sharded over the GPUs; bf16 compute with fp32 reductions.
# Modules of 10M+ parameters are wrapped (for the 7B model: each large Linear
# of the LLM, CLIP's encoder layers, the LM head), an embedding never alone:
# peft's trainable-token layer around the 7B's token embedding reads its
# weight directly and fails on a shard (torch's size-based policy alone
# wraps it apart). The original parameters stay visible (use_orig_params),
# which LoRA's mix of frozen and trained weights needs. Full state dicts keep
# the checkpoints' names, so TrainableCheckpointHook can filter them. Without
# a GPU, tools/dist_train.sh runs it on the CPUs with gloo
# (tests/test_fsdp.py).
# The config that uses this file sets runner_type='FlexibleRunner' (its
# other base, default_runtime.py, names LumenRunner, and two bases may not
# set the same key).
strategy = dict(
    # mmengine's FSDPStrategy, fixed to clip by the whole gradient's norm,
    # to resume its optimizer under torch>=2.1 and to run on CPUs
    # (lumen_mm/engine/dist.py)
    type='LumenFSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='lumen_mm.engine.dist.fsdp_auto_wrap_policy',
            min_num_params=int(1e7)),
        use_orig_params=True,
        mixed_precision=dict(
            param_dtype='bfloat16',
            reduce_dtype='float32',
            buffer_dtype='float32')),
    state_dict_cfg='full')
