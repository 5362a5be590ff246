# A tiny, randomly initialised Lumen that trains on a CPU in minutes:
# CLIP ViT (4 layers, width 128, patch 8) + Llama (2 layers, width 128).
# Unlike the paper's frozen pretrained CLIP and LoRA-tuned Vicuna, every part
# trains from scratch here.
tokenizer = 'data/lumen_shapes/tokenizer'
model = dict(
    type='Lumen',
    data_preprocessor=dict(
        type='DetDataPreprocessor',
        # CLIP's normalisation
        mean=[122.770938, 116.7460125, 104.09373615],
        std=[68.5005327, 66.6321579, 70.32316305],
        bgr_to_rgb=True),
    backbone=dict(
        type='LlavaLMM',
        tokenizer=tokenizer,
        vision_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=4,
            num_attention_heads=4,
            image_size=64,
            patch_size=8),
        text_config=dict(
            hidden_size=128,
            intermediate_size=512,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=4,
            max_position_embeddings=512),
        image_size=64,
        aligner_image_size=128,
        vision_feature_layer=-1,
        aligner_feature_layer=-1,
        freeze_vision=False,
        lora=None),
    # A convolutional aligner that multiplies every patch by the [LOC]
    # embedding (fusion='multiply'; the paper's Table 3a "Conv." concatenates
    # instead, fusion='concat'). A randomly initialised LMM gives every
    # prompt almost the same [LOC] state, so every class prompt gets the same
    # heatmap until training breaks the symmetry: batch normalisation of the
    # [LOC] states over the prompts of a batch (text_norm_cfg) breaks it from
    # the start, and the multiplicative conv aligner sooner than the
    # transformer one. Dilations (1, 2, 4) let three convolutions see 15 x 15
    # patches, which relations need ("left of the yellow cross").
    # Measurements: docs/studies/all_tasks.md, docs/studies/det_ground.md.
    neck=dict(
        type='ConvDenseAligner',
        embed_dim=128,
        num_convs=3,
        dilations=(1, 2, 4),
        fusion='multiply',
        # with several GPUs, sync_bn='torch' in the config syncs its
        # statistics (mmengine's Runner converts it)
        text_norm_cfg=dict(type='BN1d')),
    # mmdet CenterNet's radius overlap (the head's default is CenterNet's
    # 0.7): the Lumen-Shapes targets were tuned and measured with it.
    bbox_head=dict(type='HeatmapHead', min_overlap=0.3),
    loss_lm_weight=1.0,
    test_cfg=dict(
        det=dict(topk=100, nms_iou=0.5, max_per_img=100),
        ground=dict(topk=1)))
