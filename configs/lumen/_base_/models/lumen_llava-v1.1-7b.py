# Lumen-7B (Sec. 3, 4.1.2): LLaVA-1.1 (CLIP ViT-L/14 at 224, feature layer
# -2, one linear projector, Vicuna-7B) with LoRA on the language model, a
# light transformer aligner on 448-px CLIP features (32 x 32 patches), and
# SAM ViT-H, frozen, as the promptable mask decoder.
#
# Weights (docs/reproduce.md):
#   checkpoints/llava-v1.1-7b-hf   tools/convert_llava_v1.py of the original
#                                  LLaVA-Lightning-7B-v1-1 (after its delta)
#   checkpoints/sam_vit_h_4b8939.pth   the official SAM ViT-H checkpoint
llava_pretrained = 'checkpoints/llava-v1.1-7b-hf'
sam_checkpoint = 'checkpoints/sam_vit_h_4b8939.pth'
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
        pretrained=llava_pretrained,
        # The shapes of LLaVA-1.1-7B, so that the model can be built without
        # its weights (pretrained=None, e.g. tools/benchmark.py --random-init);
        # ignored when `pretrained` loads.
        vision_config=dict(  # CLIP ViT-L/14, 224 px
            hidden_size=1024,
            intermediate_size=4096,
            num_hidden_layers=24,
            num_attention_heads=16,
            image_size=224,
            patch_size=14,
            projection_dim=768,
            hidden_act='quick_gelu'),
        text_config=dict(  # Vicuna-7B v1.1 (LLaMA-7B)
            # LLaMA's 32000 + <im_patch>, <im_start>, <im_end> + <image>
            vocab_size=32004,
            hidden_size=4096,
            intermediate_size=11008,
            num_hidden_layers=32,
            num_attention_heads=32,
            num_key_value_heads=32,
            max_position_embeddings=2048,
            rms_norm_eps=1e-6,
            hidden_act='silu'),
        # the converted single linear projector (linear_2 is the identity)
        projector_hidden_act='linear',
        image_size=224,
        aligner_image_size=448,
        vision_feature_layer=-2,
        aligner_feature_layer=-2,
        freeze_vision=True,
        # LoRA on the LLM's attention (Sec. 3.1.3); rank and alpha are not in
        # the paper: LLaVA's and LISA's LoRA settings.
        lora=dict(
            r=8, lora_alpha=16, lora_dropout=0.05,
            target_modules=['q_proj', 'v_proj']),
        # LLaVA-1.1 wraps the 256 image tokens in <im_start> ... <im_end>,
        # and its tokenizer dropped the whitespace next to them
        conversation=dict(image_start='<im_start>', image_end='<im_end>',
                          strip_around_image=True),
        gradient_checkpointing=True),
    # a light transformer (Sec. 3.1.2), SAM's two-way decoder widths
    neck=dict(
        type='TransformerDenseAligner',
        embed_dim=256,
        depth=2,
        num_heads=8,
        mlp_dim=2048),
    bbox_head=dict(type='HeatmapHead'),
    mask_head=dict(
        type='SamMaskHead',
        sam_type='vit_h',
        checkpoint=sam_checkpoint,
        train_decoder=False),
    loss_lm_weight=1.0,  # lambda_t = lambda_h = 1 (Eq. 5)
    # Stage 2 (Sec. 4.1.2): K = 100 + NMS for detection and instance
    # segmentation, K = 1 for grounding, referring segmentation and each
    # keypoint; counting keeps the confident ones of 100 peaks.
    test_cfg=dict(
        det=dict(topk=100, nms_iou=0.5, max_per_img=100),
        seg=dict(topk=100, nms_iou=0.5, max_per_img=100),
        ground=dict(topk=1),
        refseg=dict(topk=1),
        pose=dict(topk=1),
        count=dict(topk=100, score_thr=0.3)))
