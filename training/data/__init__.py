"""s2vc.training.data: what the trainer and the evaluations read — dataset layouts on disk, clip
datasets (decoded videos, a motion-preserved mirror's keys), skipped-video accounting, the clip
augmentations, and the built-in synthetic static-bias set. Imports neither pretraining nor
evaluation."""
