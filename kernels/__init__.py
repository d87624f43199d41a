"""Device code of fastinit (packaged as ``fastinit.kernels``).

* ``contract``      - the value contract as data: Philox constants, counter layout, float
                      construction and polynomial coefficients (no Triton import).
* ``philox``        - Philox4x32 and the counter layout, as Triton device functions.
* ``distributions`` - uniform / normal / truncated-normal variates from Philox words.
* ``fill``          - the fill kernels.

Importing this package does not import Triton; the Triton modules do.
"""
