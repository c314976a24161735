"""s2vc.training: everything that trains or measures, one sub-package per role:

- ``data/``: dataset layouts, clip datasets, augmentations, the synthetic set
- ``flow/``: fitting the flow to a dataset, and checking that it fits
- ``pretrain/``: MoCo, the keys of every arm, the mirror, the training loop
- ``evaluation/``: the evaluations of a pretrained backbone
- ``experiments/``: the reproduction and the ablations over arms and seeds

``models.py`` (backbones, shared by pretraining and evaluation) and ``distributed.py`` (process
groups and RNG state, shared by flow fitting and pretraining), ``run_files.py`` (a run folder's
files) and ``stats.py`` (Student t quantiles, shared by the flow fit check and the experiments)
stay at the top.
"""
