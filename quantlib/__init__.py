"""quantlib: quantize LLMs and score them (perplexity, efficiency, lm-eval benchmarks), one run record per spec."""
__version__ = "0.1.0"
