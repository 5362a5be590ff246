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
    # The convolutional aligner of the paper's Table 3a. With a randomly
    # initialised LMM the [LOC] states of different prompts start almost
    # equal (relative spread 0.5% after 300 iterations): every class prompt
    # gets the same heatmap until training breaks that symmetry, and when
    # it does is luck (learning rate 2e-3: never within 1200 iterations,
    # bbox AP50 0.149). Batch normalisation of the [LOC] states over the
    # prompts of a batch (text_norm_cfg) breaks it from the start: bbox
    # AP50 0.666 vs 0.598 (1200 iterations, CPU). The conv aligner, which
    # multiplies every patch feature by the [LOC] embedding, also breaks it
    # sooner than the paper's transformer aligner
    # (shapes/lumen_tiny_shapes_det_ground_transformer.py): bbox AP50 0.343
    # vs 0.089 after 600 iterations without the normalisation (one H200).
    # The paper's finding (transformer > conv) was made with pretrained CLIP
    # and Vicuna. Dilations (1, 2, 4) let three convolutions see 15 x 15
    # patches, which relations ("left of the yellow cross") need: grounding
    # Acc@0.5 0.455 vs 0.410 with plain 3x3 convolutions (1200 iterations
    # each, CPU).
    neck=dict(
        type='ConvDenseAligner',
        embed_dim=128,
        num_convs=3,
        dilations=(1, 2, 4),
        # with several GPUs, sync_bn='torch' in the config syncs its
        # statistics (mmengine's Runner converts it)
        text_norm_cfg=dict(type='BN1d')),
    bbox_head=dict(type='HeatmapHead'),
    loss_lm_weight=1.0,
    test_cfg=dict(
        det=dict(topk=100, nms_iou=0.5, max_per_img=100),
        ground=dict(topk=1)))
