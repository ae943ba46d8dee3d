"""cuteattn: FlashAttention-class attention kernels for Hopper and Blackwell, in the CuTe DSL."""

from cuteattn.interface import flash_attn_func, flash_attn_varlen_func

__version__ = "0.1.0"
__all__ = ["flash_attn_func", "flash_attn_varlen_func", "__version__"]
