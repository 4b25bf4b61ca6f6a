"""Quantization: the method registry (methods) and the algorithms it names (gptq, spqr, rtn, bnb)."""
