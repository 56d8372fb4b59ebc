"""The ML domain: features, triple-barrier labels, regimes, the sizer, the dataset, the model
registry, the in-process model gate and the walk-forward evaluation. Plain Python (no ray):
`training/` runs the same code on a cluster. See docs/ML.md."""
