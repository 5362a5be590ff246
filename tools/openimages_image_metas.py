"""Write the image sizes mmdet's OpenImagesDataset needs (its meta_file).

    python tools/openimages_image_metas.py \
        data/openimages/annotations/oidv6-train-annotations-bbox.csv \
        data/openimages/train \
        data/openimages/annotations/train-image-metas.pkl --nproc 8

lumen_mm/converters/openimages.py says why and what the file holds; docs/
datasets.md gives the whole OpenImages layout.
"""
import argparse

from lumen_mm.converters.openimages import write_openimages_image_metas


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('ann_file', help='oidv6-*-annotations-bbox.csv')
    parser.add_argument('image_dir', help='the <ImageID>.jpg images of it')
    parser.add_argument('out_file', help='the .pkl to write')
    parser.add_argument('--nproc', type=int, default=1,
                        help='processes reading image headers')
    args = parser.parse_args()
    metas = write_openimages_image_metas(args.ann_file, args.image_dir,
                                         args.out_file, args.nproc)
    print(f'{len(metas)} image sizes -> {args.out_file}')


if __name__ == '__main__':
    main()
