"""s2vc.training.evaluation: the paper's evaluations of a pretrained backbone — features, retrieval,
linear probe, finetuning, temporal order, motion/look probes, similarity, static gain and CAM.
Reads checkpoints by their file layout; never imports the pretraining internals."""
