# Table 3b: aligner input 896 x 896 (the LMM keeps its 224-px tokens).
# Paper: COCO det AP 22.3 / AP50 35.2 / AP75 21.8.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
image_size = 896
model = dict(backbone=dict(aligner_image_size=image_size))


# The same function is in table3b_input-256.py: mmengine drops the functions
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
