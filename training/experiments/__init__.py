"""s2vc.training.experiments: runs that pretrain several arms and score each — the reproduction
and the ablations, their scoring cache, reports and plots, the shipped record, and the pictures
and band probes of each arm's key."""
