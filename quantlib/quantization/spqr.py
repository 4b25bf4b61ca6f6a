"""SpQR (Dettmers et al., 2024), simulated as in the paper under study, in the symbols of GPTQ.

GPTQ's column-by-column quantization with error feedback through the Cholesky factor of H^-1, plus:
* small groups of beta1 (16) columns, each with its own asymmetric min-max grid per row;
* bilevel statistics: the per-row scales and zeros of a group are themselves quantized to `qq_bits`
  (3) bits in groups of beta2 (16) rows;
* outliers: a weight whose scaled error (w - q)^2 / [H^-1]_qq^2 exceeds tau is kept in 16 bits, with
  tau = threshold * mean_q(Var_rows(W[:, q]) / [H^-1]_qq^2) (SpQR's relative outlier threshold). Before
  a group's grid is fitted, weights that would be outliers (leave-one-out criterion) are left out.
The result is written back dequantized: numerically the SpQR model, stored in the baseline dtype.
"""
from __future__ import annotations

import torch

from quantlib.quantization.gptq import GPTQ


def _minmax(x: torch.Tensor, bits: int):
    """Asymmetric per-row grid with a continuous zero point (SpQR's round_zero=False)."""
    xmin, xmax = x.min(1, keepdim=True).values, x.max(1, keepdim=True).values
    scale = ((xmax - xmin) / (2 ** bits - 1)).clamp(min=1e-9)
    return scale, -xmin / scale


def _fake(x, scale, zero, bits):
    return scale * (torch.clamp(torch.round(x / scale + zero), 0, 2 ** bits - 1) - zero)


def _bilevel(stat: torch.Tensor, bits: int, beta2: int) -> torch.Tensor:
    """Quantize a column of per-row statistics to `bits` bits in groups of beta2 rows."""
    rows = stat.shape[0]
    pad = (-rows) % beta2
    s = torch.cat([stat.flatten(), stat.flatten()[-1:].expand(pad)]).view(-1, beta2)
    return _fake(s, *_minmax(s, bits), bits).flatten()[:rows].view_as(stat)


def _leave_one_out_gain(Wg: torch.Tensor, d: torch.Tensor, bits: int) -> torch.Tensor:
    """For each weight of a group: how much the group's scaled error falls if it is left out of the grid."""
    g = Wg.shape[1]
    loo = torch.stack([torch.cat([torch.arange(j), torch.arange(j + 1, g)]) for j in range(g)]).to(Wg.device)
    data = Wg[:, loo].flatten(0, 1)                                             # (rows * g, g - 1)
    err_loo = (((_fake(data, *_minmax(data, bits), bits) - data).view(Wg.shape[0], g, g - 1)
                / d[loo]) ** 2).sum(-1)                                         # (rows, g)
    err_all = (((_fake(Wg, *_minmax(Wg, bits), bits) - Wg) / d) ** 2).sum(1, keepdim=True)
    return err_all - err_loo


class SpQR(GPTQ):
    @torch.no_grad()
    def fasterquant(self, bits: int, group_size: int = 16, percdamp: float = 0.01, actorder: bool = True,
                    outlier_threshold: float = 0.2, qq_bits: int = 3, beta2: int = 16,
                    blocksize: int = 128) -> dict:
        """Quantize the layer in place; returns the GPTQ-shaped statistics (loss, outliers, weights)."""
        W, Hinv, perm = self.prepare(percdamp, actorder)
        dH = torch.diag(Hinv)
        tau = outlier_threshold * (W.var(dim=0) / dH ** 2).mean().item()
        blocksize = max(blocksize // group_size, 1) * group_size  # groups never straddle blocks

        outliers = torch.zeros_like(W, dtype=torch.bool)
        grid = {}

        def column(j, W1, i):
            if i % group_size == 0:
                Wg = W1[:, i:i + group_size]  # up to date: earlier columns' errors already applied
                if outlier_threshold != float("inf") and Wg.shape[1] > 1:
                    likely = _leave_one_out_gain(Wg, dH[j:j + Wg.shape[1]], bits) > tau
                    mean = (Wg * ~likely).sum(1, keepdim=True) / (~likely).sum(1, keepdim=True).clamp(min=1)
                    Wg = torch.where(likely, mean, Wg)
                scale, zero = _minmax(Wg, bits)
                grid["scale"], grid["zero"] = _bilevel(scale, qq_bits, beta2), _bilevel(zero, qq_bits, beta2)
            w = W1[:, i]
            q = _fake(w.unsqueeze(1), grid["scale"], grid["zero"], bits).flatten()
            outliers[:, j] = ((w - q) / Hinv[j, j]) ** 2 > tau
            return torch.where(outliers[:, j], w, q)  # outliers keep their (16-bit) value

        Q, loss = self.sweep(W, Hinv, blocksize, column)
        self.write_back(Q, perm)
        return {"loss": float(loss.sum()), "outliers": int(outliers.sum()), "weights": outliers.numel()}


def effective_bits(bits: int, group_size: int, outlier_fraction: float, qq_bits: int = 3, beta2: int = 16,
                   rows: int | None = None) -> float:
    """Bits per parameter (SpQR paper, Sec. 4): codes + 3-bit group scale and zero + their fp16 second-level
    scale and zero per beta2 groups + 32 bits per outlier (16-bit value, 16-bit column index);
    plus, given `rows`, a 32-bit permutation index per column."""
    return (bits + 2 * qq_bits / group_size + 2 * 2 * 16 / (group_size * beta2) + 32 * outlier_fraction
            + (32 / rows if rows else 0.0))
