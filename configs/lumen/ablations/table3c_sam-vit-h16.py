# Table 3c: the aligner reads SAM ViT-H/16 image embeddings (the mask head's
# frozen encoder, 64 x 64 cells of 7 px at 448) instead of CLIP ViT-L/14.
# The LMM still sees CLIP's tokens.
# Paper: COCO det AP 12.3 / AP50 20.0 / AP75 12.6.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
model = dict(aligner_features='sam')


def _with_sam_image(node):
    """Every letterbox pipeline keeps the original at SAM's 1024 px, so SAM
    encodes it at its own resolution; pose crops (TopdownAffine) reach SAM
    as the aligner sees them."""
    if isinstance(node, dict):
        return {k: _with_sam_image(v) for k, v in node.items()}
    if isinstance(node, (list, tuple)):
        node = [_with_sam_image(v) for v in node]
        types = [v.get('type') for v in node if isinstance(v, dict)]
        if 'Resize' in types and 'LumenSamImage' not in types:
            node.insert(1, dict(type='LumenSamImage', size=1024))
        return node
    return node


train_dataloader = _with_sam_image(_base_.train_dataloader)
val_dataloader = _with_sam_image(_base_.val_dataloader)
test_dataloader = val_dataloader
