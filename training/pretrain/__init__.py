"""s2vc.training.pretrain: MoCo pretraining whose keys come from the generator — the MoCo module,
the key of each arm (S²VC and the peers), the motion-preserved mirror generated once, the run's
settings and the training loop."""
