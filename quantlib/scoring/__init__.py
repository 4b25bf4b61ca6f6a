"""Scoring a loaded model: perplexity (+ divergence), lm-eval benchmarks (harness), memory and speed."""
