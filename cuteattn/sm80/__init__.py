"""Kernels for sm80."""
