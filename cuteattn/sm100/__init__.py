"""Kernels for sm100."""
