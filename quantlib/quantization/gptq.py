"""GPTQ (Frantar et al., 2023) in the symbols of the paper and of IST-DASLab/gptq `gptq.py`.

W: a linear layer's weight (rows x columns), H = 2 X X^T its input Hessian, Q the quantized W.
Columns are quantized one at a time (in act-order: decreasing diag(H)); each column's error is
spread over the columns not yet quantized through the Cholesky factor of H^-1. Groups of
`group_size` consecutive (permuted) columns share one scale and zero point, as in GPTQ's
act-order + group format (which stores g_idx). The result is written back as the dequantized
weight Q, numerically the quantized layer.
"""
from __future__ import annotations

import math

import torch


class Quantizer:
    """Uniform min-max grid for `bits`, per output row; symmetric keeps the zero point mid-grid."""

    def __init__(self, bits: int, sym: bool = True):
        self.maxq = 2 ** bits - 1
        self.sym = sym

    def find_params(self, x: torch.Tensor) -> None:
        xmin = x.min(1).values.clamp(max=0)
        xmax = x.max(1).values.clamp(min=0)
        if self.sym:
            xmax = torch.maximum(xmin.abs(), xmax)
            xmin = torch.where(xmin < 0, -xmax, xmin)
        empty = (xmin == 0) & (xmax == 0)
        xmin[empty], xmax[empty] = -1, 1
        self.scale = ((xmax - xmin) / self.maxq).unsqueeze(1)
        if self.sym:
            self.zero = torch.full_like(self.scale, (self.maxq + 1) / 2)
        else:
            self.zero = torch.round(-xmin / self.scale.squeeze(1)).unsqueeze(1)

    def quantize(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.clamp(torch.round(x / self.scale) + self.zero, 0, self.maxq)
        return self.scale * (q - self.zero)


class GPTQ:
    def __init__(self, layer: torch.nn.Linear):
        self.layer = layer
        self.rows, self.columns = layer.weight.shape
        self.H = torch.zeros(self.columns, self.columns, device=layer.weight.device)
        self.nsamples = 0

    def add_batch(self, inp: torch.Tensor) -> None:
        """Running mean of 2 X X^T over calibration tokens."""
        X = inp.reshape(-1, self.columns).t().float()
        n = X.shape[1]
        self.H *= self.nsamples / (self.nsamples + n)
        self.nsamples += n
        X = math.sqrt(2 / self.nsamples) * X
        self.H += X @ X.t()

    def prepare(self, percdamp: float, actorder: bool):
        """W in float, the upper Cholesky factor of the damped H^-1, and the act-order permutation (or None)."""
        W, H = self.layer.weight.data.clone().float(), self.H
        dead = torch.diag(H) == 0
        H[dead, dead] = 1
        W[:, dead] = 0
        perm = torch.argsort(torch.diag(H), descending=True) if actorder else None
        if actorder:
            W, H = W[:, perm], H[perm][:, perm]
        H += percdamp * torch.mean(torch.diag(H)) * torch.eye(self.columns, device=H.device)
        return W, torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(H)), upper=True), perm

    @torch.no_grad()
    def fasterquant(self, bits: int, group_size: int = 128, percdamp: float = 0.01,
                    actorder: bool = True, sym: bool = True, blocksize: int = 128) -> dict:
        """Quantize the layer in place; returns the layer statistics shared by every calibrated method:
        the GPTQ loss sum((w - q)^2 / [H^-1]_qq^2) / 2, outliers kept (none here) and weights."""
        if group_size > 0:
            blocksize = group_size
        W, Hinv, perm = self.prepare(percdamp, actorder)
        quantizer = Quantizer(bits, sym)
        scales, zeros = [], []  # the grid of each group (in act-order), kept for packed kernels
        if group_size <= 0 or group_size >= self.columns:
            quantizer.find_params(W)
            scales, zeros = [quantizer.scale], [quantizer.zero]

        def column(j, W1, i):
            if 0 < group_size < self.columns and j % group_size == 0:
                # blocksize == group_size, so a group starts at i == 0 where W is up to date
                quantizer.find_params(W[:, j:j + group_size])
                scales.append(quantizer.scale)
                zeros.append(quantizer.zero)
            return quantizer.quantize(W1[:, i].unsqueeze(1)).flatten()

        Q, loss = self.sweep(W, Hinv, blocksize, column)
        self.write_back(Q, perm)
        # W = scale * (q - zero) column by column, groups of consecutive columns in the order `perm`
        self.grid = {"scale": torch.cat(scales, 1), "zero": torch.cat(zeros, 1),
                     "perm": perm if actorder else torch.arange(self.columns)}
        return {"loss": float(loss.sum()), "outliers": 0, "weights": Q.numel()}

    @staticmethod
    def sweep(W: torch.Tensor, Hinv: torch.Tensor, blocksize: int, column) -> tuple[torch.Tensor, torch.Tensor]:
        """GPTQ's lazy-batch sweep over the columns of W (updated in place): column j is quantized by
        `column(j, W1, i)` (W1: j's block with every earlier error applied, i: j's place in it), and its
        scaled error (w - q) / [H^-1]_jj is spread over the columns after it. Returns Q and the loss per
        row, sum((w - q)^2 / [H^-1]_jj^2) / 2."""
        Q = torch.zeros_like(W)
        loss = torch.zeros(W.shape[0], device=W.device)
        for i1 in range(0, W.shape[1], blocksize):
            i2 = min(i1 + blocksize, W.shape[1])
            W1, Hinv1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2]
            Err1 = torch.zeros_like(W1)
            for i in range(i2 - i1):
                w, d = W1[:, i], Hinv1[i, i]
                q = column(i1 + i, W1, i)
                Q[:, i1 + i] = q
                err = (w - q) / d
                W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
                Err1[:, i] = err
            W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
            loss += (Err1 ** 2).sum(1) / 2
        return Q, loss

    def write_back(self, Q: torch.Tensor, perm) -> None:
        """The quantized weight, in the layer's column order and dtype; H is no longer needed."""
        if perm is not None:
            Q = Q[:, torch.argsort(perm)]
        self.layer.weight.data = Q.to(self.layer.weight.dtype)
        del self.H


def packed_bytes(rows: int, columns: int, bits: int, group_size: int, actorder: bool) -> int:
    """Bytes of a GPTQ-format layer: packed codes, fp16 scales, packed zeros, and g_idx under act-order."""
    groups = math.ceil(columns / group_size) if group_size > 0 else 1
    codes = math.ceil(rows * columns * bits / 8)
    scales = groups * rows * 2
    zeros = math.ceil(groups * rows * bits / 8)
    g_idx = columns * 4 if actorder else 0
    return codes + scales + zeros + g_idx
