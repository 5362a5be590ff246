# mmpose dataset info of Lumen-Shapes' stick figures
# (lumen_mm/datasets/shapes/pose.py; annotations/person_keypoints_*.json):
#   metainfo=dict(from_file='configs/lumen/_base_/datasets/'
#                           'lumen_shapes_pose_info.py')
# Left and right are the person's own; every figure faces the viewer, so its
# left hand and foot are on the image's right.
# Sigmas and joint weights are those of the COCO keypoints each point stands
# for: head ~ ear (the centre of a drawn disc is less sharp than a nose),
# neck ~ shoulder, hand ~ wrist, hip ~ hip, foot ~ ankle.
dataset_info = dict(
    dataset_name='lumen_shapes_pose',
    paper_info=dict(
        author='lumen_mm',
        title='Lumen-Shapes: synthetic stick figures for Lumen pose tests',
        container='',
        year='2026',
        homepage='',
    ),
    keypoint_info={
        0:
        dict(name='head', id=0, color=[51, 153, 255], type='upper', swap=''),
        1:
        dict(name='neck', id=1, color=[51, 153, 255], type='upper', swap=''),
        2:
        dict(
            name='left_hand',
            id=2,
            color=[0, 255, 0],
            type='upper',
            swap='right_hand'),
        3:
        dict(
            name='right_hand',
            id=3,
            color=[255, 128, 0],
            type='upper',
            swap='left_hand'),
        4:
        dict(name='hip', id=4, color=[51, 153, 255], type='lower', swap=''),
        5:
        dict(
            name='left_foot',
            id=5,
            color=[0, 255, 0],
            type='lower',
            swap='right_foot'),
        6:
        dict(
            name='right_foot',
            id=6,
            color=[255, 128, 0],
            type='lower',
            swap='left_foot'),
    },
    skeleton_info={
        0: dict(link=('head', 'neck'), id=0, color=[51, 153, 255]),
        1: dict(link=('neck', 'left_hand'), id=1, color=[0, 255, 0]),
        2: dict(link=('neck', 'right_hand'), id=2, color=[255, 128, 0]),
        3: dict(link=('neck', 'hip'), id=3, color=[51, 153, 255]),
        4: dict(link=('hip', 'left_foot'), id=4, color=[0, 255, 0]),
        5: dict(link=('hip', 'right_foot'), id=5, color=[255, 128, 0]),
    },
    joint_weights=[1.0, 1.0, 1.2, 1.2, 1.0, 1.5, 1.5],
    sigmas=[0.035, 0.079, 0.062, 0.062, 0.107, 0.089, 0.089])
