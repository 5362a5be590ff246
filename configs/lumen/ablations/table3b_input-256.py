# Table 3b: aligner input 256 x 256 (the LMM keeps its 224-px tokens).
# CLIP's stride-14 patch embedding turns 256 px into 18 x 18 patches (the
# last 4 px dropped); lumen_mm asks for a multiple of the patch size, and
# 252 px gives the same 18 x 18 grid.
# Paper: COCO det AP 25.0 / AP50 38.9 / AP75 24.8.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
image_size = 252
model = dict(backbone=dict(aligner_image_size=image_size))


# The same function is in table3b_input-896.py: mmengine drops the functions
# of a base config, so the two cannot inherit it.
def _resized(node):
    """The config with every pipeline's output size set to image_size."""
    if isinstance(node, dict):
        node = {k: _resized(v) for k, v in node.items()}
        key = dict(Resize='scale', Pad='size').get(node.get('type'))
        if node.get('type') == 'mmpose.TopdownAffine':
            key = 'input_size'
        if key:
            node[key] = (image_size, image_size)
        return node
    if isinstance(node, (list, tuple)):
        return type(node)(_resized(v) for v in node)
    return node


train_dataloader = _resized(_base_.train_dataloader)
val_dataloader = _resized(_base_.val_dataloader)
test_dataloader = val_dataloader
