# Table 2 #5: all four tasks at 0.56 / 0.19 / 0.19 / 0.06 (detection and
# grounding each with their mask conversations), the default.
# Paper: RefCOCOg val Acc@0.5 73.8, COCO AP50 43.4 (Table 2's COCO column is
# the AP50 of Table 3, 43.4 for the default).
_base_ = './lumen_llava-v1.1-7b_lora_448_multitask_10k.py'
