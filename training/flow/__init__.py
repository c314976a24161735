"""s2vc.training.flow: fitting the normalizing flow to a dataset by maximum likelihood — its
settings, the frames it reads, the fit check against a dataset, and the synthetic set's own
fitted flow."""
