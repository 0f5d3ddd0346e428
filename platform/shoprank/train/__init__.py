"""Multi-task training: config, per-task examples, sampler, losses and the training loop."""
