"""Layers, models, losses and optimizers built on the gpucnn functional API.

Imports with NumPy alone; CuPy is imported only when a model is moved to
"cuda" or given CuPy arrays.
"""
from gpucnn.nn.graph import CaptureError, CompiledStep, compile_step
from gpucnn.nn.layers import AdaptiveAvgPool2D, AvgPool2D, Conv2D, ConvTranspose2D, Flatten, Linear, MaxPool2D, ReLU
from gpucnn.nn.losses import CrossEntropyLoss, SquaredErrorLoss
from gpucnn.nn.models import MODELS, lenet, resnet20, vgg_small
from gpucnn.nn.module import Module, Sequential
from gpucnn.nn.parameter import Parameter
from gpucnn.nn.optim import SGD, Adam, AdamW, CosineAnnealingLR, StepLR
from gpucnn.nn.regularization import BatchNorm2D, Dropout
from gpucnn.nn.residual import Residual

__all__ = ["Module", "Sequential", "Parameter", "Residual", "Conv2D", "ConvTranspose2D", "Linear", "MaxPool2D",
           "AvgPool2D", "AdaptiveAvgPool2D", "ReLU", "Flatten", "BatchNorm2D", "Dropout", "CrossEntropyLoss",
           "SquaredErrorLoss", "SGD", "Adam", "AdamW", "StepLR", "CosineAnnealingLR", "lenet", "vgg_small",
           "resnet20", "MODELS", "compile_step", "CompiledStep", "CaptureError"]
