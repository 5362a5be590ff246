"""Image sizes for OpenImages v6, which mmdet's ``OpenImagesDataset`` needs.

The released box files (``oidv6-train-annotations-bbox.csv``, which adds
the columns ``XClick1X`` ... ``XClick4Y``; ``validation-annotations-bbox.csv``)::

    ImageID,Source,LabelName,Confidence,XMin,XMax,YMin,YMax,IsOccluded,
    IsTruncated,IsGroupOf,IsDepiction,IsInside[,XClick1X,...]
    000002b66c9c498e,xclick,/m/01g317,1,0.012500,0.195312,0.148438,...

gives boxes as fractions of the image size, and no sizes. mmdet's
``OpenImagesDataset`` turns them into pixels with a ``meta_file``: a pickled
list of ``{'filename', 'ori_shape': (h, w, 3)}``, one per image in the order
the CSV first lists it. mmdet writes that file with its
``tools/misc/get_image_metas.py``, which is not part of the installed package,
needs a config with a ``{split}_dataloader`` of one plain dataset, and
decodes every image (1.7M for train); here the sizes come from the image
headers, as mmcv's loader will decode them (EXIF orientation applied).
"""
import csv
import os.path as osp
from multiprocessing import Pool
from typing import List, Optional

from mmengine.fileio import dump

from lumen_mm.datasets.adapters import read_image_size

BBOX_HEADER = ('ImageID', 'Source', 'LabelName', 'Confidence', 'XMin', 'XMax',
               'YMin', 'YMax', 'IsOccluded', 'IsTruncated', 'IsGroupOf',
               'IsDepiction', 'IsInside')


def openimages_image_ids(ann_file: str) -> List[str]:
    """The ImageIDs of a box CSV, one per run of rows, in file order (the
    order of mmdet's ``OpenImagesDataset``, which expects each image's rows
    together, as released)."""
    ids: List[str] = []
    with open(ann_file, newline='') as f:
        reader = csv.reader(f)
        header = tuple(next(reader, ()))
        if header[:len(BBOX_HEADER)] != BBOX_HEADER:
            raise ValueError(
                f'{ann_file} is not an OpenImages box CSV: its header is '
                f'{",".join(header)!r}, expected {",".join(BBOX_HEADER)!r} '
                '(and optionally XClick1X...).')
        for row in reader:
            if not ids or row[0] != ids[-1]:
                ids.append(row[0])
    if len(set(ids)) != len(ids):
        raise ValueError(
            f'{ann_file} lists some images\' boxes in several places; '
            'mmdet\'s OpenImagesDataset needs each image\'s rows together: '
            'sort the file by ImageID.')
    return ids


def _meta(path: str) -> dict:
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'{path} does not exist: pass the folder holding the '
            '<ImageID>.jpg images of this CSV\'s split.')
    width, height = read_image_size(path)
    return dict(filename=path, ori_shape=(height, width, 3))


def write_openimages_image_metas(ann_file: str,
                                 image_dir: str,
                                 out_file: Optional[str] = None,
                                 nproc: int = 1) -> List[dict]:
    """The meta list of ``ann_file``'s images in ``image_dir``; written to
    ``out_file`` (a ``.pkl``) when given. ``nproc`` processes read the
    headers."""
    if out_file is not None and not out_file.endswith('.pkl'):
        raise ValueError(f'out_file={out_file!r}: mmdet reads the metas as a '
                         'pickle; name it *.pkl.')
    paths = [osp.join(image_dir, f'{i}.jpg')
             for i in openimages_image_ids(ann_file)]
    if nproc > 1:
        with Pool(nproc) as pool:
            metas = pool.map(_meta, paths, chunksize=1024)
    else:
        metas = [_meta(p) for p in paths]
    if out_file is not None:
        dump(metas, out_file, file_format='pkl', protocol=4)
    return metas
