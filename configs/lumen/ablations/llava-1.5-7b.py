# The ablation default on LLaVA-1.5-7B instead of LLaVA-1.1 (not in the
# paper, so no number to reproduce; compare with COCO det AP 27.4 of the
# default): CLIP ViT-L/14 at 336 px, a two-layer GELU projector, Vicuna-7B
# v1.5, no <im_start>/<im_end>, whitespace kept next to the image.
# llava-hf/llava-1.5-7b-hf loads as it is.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(
    backbone=dict(
        pretrained='checkpoints/llava-1.5-7b-hf',
        vision_config=dict(image_size=336),
        # llava-hf pads the vocabulary to 32064
        text_config=dict(vocab_size=32064, max_position_embeddings=4096),
        projector_hidden_act='gelu',
        image_size=336,
        conversation=dict(image_start=None, image_end=None,
                          strip_around_image=False)))
