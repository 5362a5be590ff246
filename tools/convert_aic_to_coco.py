"""Convert AI Challenger keypoint annotations to the COCO keypoint layout.

    python tools/convert_aic_to_coco.py \
        keypoint_train_annotations_20170909.json \
        data/aic/train data/aic/annotations/aic_train.json

The output loads with mmpose's AicDataset (see
configs/lumen/_base_/datasets/lumen_paper_448.py); lumen_mm/converters/aic.py
describes the two layouts.
"""
import argparse

from lumen_mm.converters.aic import convert_aic_to_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='AIC keypoint annotation JSON')
    parser.add_argument('image_dir', help='the images of that split')
    parser.add_argument('out_file', help='COCO-layout JSON to write')
    args = parser.parse_args()
    coco = convert_aic_to_coco(args.ann_file, args.image_dir, args.out_file)
    print(f'{len(coco["images"])} images, {len(coco["annotations"])} people '
          f'-> {args.out_file}')


if __name__ == '__main__':
    main()
