# PyTorch FSDP through mmengine's FlexibleRunner: parameters, gradients and
# optimizer states sharded over the GPUs; bf16 compute with fp32 reductions.
# Blocks of 10M+ parameters (the LLM's decoder layers) are wrapped; the
# original parameters stay visible (use_orig_params), which LoRA's mix of
# frozen and trained weights needs. Full state dicts keep the checkpoints'
# names, so TrainableCheckpointHook can filter them.
runner_type = 'FlexibleRunner'
strategy = dict(
    type='FSDPStrategy',
    model_wrapper=dict(
        auto_wrap_policy=dict(
            type='torch.distributed.fsdp.wrap.size_based_auto_wrap_policy',
            min_num_params=int(1e7)),
        use_orig_params=True,
        mixed_precision=dict(
            param_dtype='bfloat16',
            reduce_dtype='float32',
            buffer_dtype='float32')),
    state_dict_cfg='full')
