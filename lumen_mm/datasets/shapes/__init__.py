"""Lumen-Shapes: a small synthetic dataset for every Lumen task, so that the
whole pipeline can be trained and checked in minutes on a CPU.

Modules, by what they generate:

* :mod:`.objects`: the shapes (1-6 coloured shapes per image on a gradient
  or textured background with Gaussian pixel noise), their drawing and COCO
  records; the other parts draw with it.
* :mod:`.referring`: referring expressions that pick out one object.
* :mod:`.pose`: stick figures with keypoints.
* :mod:`.counting`: crowded images of small objects and their counts.
* :mod:`.questions`: questions and answers about the shapes images.
* :mod:`.writer`: :func:`make_shapes`, which writes all of them and a
  tokenizer for tiny LMMs.

The files are COCO instances, refer-API refs, COCO keypoints and
LLaVA-Instruct conversations, so that mmdet's ``CocoDataset`` and
``RefCocoDataset``, mmpose's ``CocoDataset`` and the VQA dataset read them
unchanged. Layout of ``out_dir``::

    train/000000.png ...
    val/000000.png ...
    pose_train/000000.png ...   pose_val/...
    count_train/000000.png ...  count_val/...
    annotations/instances_train.json  # file_name relative to train/
    annotations/instances_val.json    # file_name relative to val/
    annotations/instances_refs.json   # both splits, relative to out_dir
    annotations/refs_shapes.p         # refs of both splits (refer-API)
    annotations/person_keypoints_{train,val}.json  # images in pose_{split}/
    annotations/count_{train,val}.json             # images in count_{split}/
    annotations/qa_{train,val}.json  # "image" relative to out_dir
    tokenizer/                        # BPE for tiny LMMs (HF format)

Dataset kwargs (mmdet 3.3)::

    CocoDataset(data_root=out_dir, ann_file='annotations/instances_val.json',
                data_prefix=dict(img='val/'), metainfo=shapes_metainfo())
    RefCocoDataset(data_root=out_dir,
                   ann_file='annotations/instances_refs.json',
                   split_file='annotations/refs_shapes.p', split='val',
                   data_prefix=dict(img_path=''), text_mode='select_first')

``RefCocoDataset`` loads the whole pickle, keeps the refs whose ``split``
matches, and looks their ``ann_id`` and ``image_id`` up in one ``ann_file``;
that file therefore holds the images of both splits, with file names under
one ``data_prefix``. Its instances carry only ``mask`` (the RLE) and its
``text`` is the lower-cased ``raw`` sentence.

Everything is a function of the seed: image ``i`` of split ``s`` draws from
``numpy.random.default_rng([seed, s, i])`` for the shapes image and from
``default_rng([seed, s, i, stream])`` with stream 1 for pose, 2 for counting
and 3 for the questions about shapes image ``i``, so changing the size of one
split or part leaves the others untouched. The stream is never 0: numpy pads
seed entropy with zeros, so ``[seed, s, i, 0]`` would replay the shapes
image's own ``[seed, s, i]``. Ids are unique across all files: ``image_id =
(part + s) * 10**6 + i + 1`` with part 0 for shapes, 2 for pose, 4 for
counting, ``ann_id = image_id * 100 + k`` for the k-th object (1-based), and
a ref has the id of the annotation it refers to.
"""
from .objects import ShapesConfig, shapes_metainfo
from .writer import make_shapes

__all__ = ['ShapesConfig', 'make_shapes', 'shapes_metainfo']
