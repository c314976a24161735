"""s2vc.training: flow training, and (later) MoCo pretraining and the paper's evaluations."""
