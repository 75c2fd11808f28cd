"""Binary building blocks; depends on torch only (no Lightning, no MLflow).

    >>> from bnnlab.binary import BinaryConv2d, Bop, split_parameters
"""

from bnnlab.binary.bop import Bop
from bnnlab.binary.layers import (
    BinaryConv2d,
    BinaryLinear,
    QuantLayer,
    RPReLU,
    RSign,
    binary_weights,
    set_quantizers,
    snap_binary_weights,
    split_parameters,
)
from bnnlab.binary.quantizers import (
    ACTIVATIONS,
    WEIGHTS,
    approx_sign,
    approx_sign_detach,
    magnitude_aware_sign,
    make_activation,
    make_weight_quantizer,
    sign,
    sign_weight,
    ste_sign,
)

__all__ = [
    "ACTIVATIONS", "WEIGHTS", "BinaryConv2d", "BinaryLinear", "Bop", "QuantLayer", "RPReLU",
    "RSign", "approx_sign", "approx_sign_detach", "binary_weights", "magnitude_aware_sign",
    "make_activation", "make_weight_quantizer", "set_quantizers", "sign", "sign_weight",
    "snap_binary_weights", "split_parameters", "ste_sign",
]
