# Table 3e: 10k training iterations.
# Paper: COCO det AP 27.7 / AP50 43.4 / AP75 27.1 (Tables 3a-d give 27.4
# for the same 10k model). The five are also the 10k-50k checkpoints of one
# 50k run: tools/test.py on its iter_<N>.pth.
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
# the ablation default's schedule: 10k iterations
