"""fastinit: neural-network weight initialization on the device, reproducible everywhere.

The functions mirror ``torch.nn.init``; every value is a pure function of (seed, stream,
element index, distribution, dtype), identical on the CPU and on any GPU.
"""
from fastinit.init import normal_, trunc_normal_, uniform_

__version__ = "0.1.0"

__all__ = ["uniform_", "normal_", "trunc_normal_"]
