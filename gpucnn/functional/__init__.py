"""The functional API: NumPy arrays in, NumPy arrays out; CuPy in, CuPy out."""
from gpucnn.functional.adaptive import adaptive_avg_pool2d, adaptive_avg_pool2d_backward
from gpucnn.functional.basic import linear, linear_backward, relu, relu_backward
from gpucnn.functional.conv import (col2im, conv2d, conv2d_backward, conv_transpose2d,
                                    conv_transpose2d_backward, im2col)
from gpucnn.functional.loss import cross_entropy, softmax_cross_entropy, squared_error
from gpucnn.functional.dropout import dropout, dropout_backward, dropout_state
from gpucnn.functional.fused import (batch_norm2d_relu, batch_norm2d_relu_backward, conv2d_bias_relu,
                                     conv2d_bias_relu_backward)
from gpucnn.functional.norm import batch_norm2d, batch_norm2d_backward
from gpucnn.functional.pool import (avg_pool2d, avg_pool2d_backward, max_pool2d,
                                    max_pool2d_backward, max_unpool2d)

__all__ = [
    "conv2d", "conv2d_backward", "conv_transpose2d", "conv_transpose2d_backward", "im2col",
    "col2im", "max_pool2d", "max_pool2d_backward", "max_unpool2d", "avg_pool2d",
    "avg_pool2d_backward", "relu", "relu_backward", "linear", "linear_backward",
    "softmax_cross_entropy", "squared_error", "batch_norm2d", "batch_norm2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward", "cross_entropy",
    "dropout", "dropout_backward", "dropout_state",
    "conv2d_bias_relu", "conv2d_bias_relu_backward", "batch_norm2d_relu", "batch_norm2d_relu_backward",
]
