// conv.cuh: the geometry arguments every convolution kernel takes (conv2d.cu,
// conv2d_phase.cu, depthwise.cu), in the order gpucnn/cuda/conv.py's _geom passes them.
#pragma once

#define GEOM                                                                                 \
    int N, int C, int H, int W, int K, int P, int Q, int kh, int kw, int sh, int sw, int pt, \
        int pl, int dh, int dw, int G
#define GEOM_ARGS N, C, H, W, K, P, Q, kh, kw, sh, sw, pt, pl, dh, dw, G
