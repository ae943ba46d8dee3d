"""Kernels for sm90."""
