"""MixBench: a hyperparameter benchmarking harness for GAN variants."""

__version__ = "0.1.0"
