"""CPU kernels for models the hf engine loads itself: linear layers on MKL's packed GEMM, or
with weights stored transposed, both giving the same outputs faster at decoding's row counts."""

from __future__ import annotations

from typing import Any

import torch


def store_linear_weights_transposed(model: Any) -> None:
    """Keep each linear layer's weight as the transpose of an (in, out) row-major matrix.

    ``F.linear`` computes ``x @ W.T``; with ``W`` stored (out, in) row-major, MKL's CPU matmul
    takes a path that costs as much at 16-48 rows as at 64 (measured here: 1.1-1.5 ms for a
    576x1536 layer at every batch size under 64, against 0.25-0.8 ms with the transposed layout).
    Decoding shrinks the batch as rows finish, so most steps run in that range. This serves the
    layers :func:`pack_linear_layers` leaves as they are (no MKL, or not float32). Only for
    models the engine loads itself: a caller's model (a policy in training) keeps its own
    parameters. A tied output layer gets its own copy, since the input embedding needs the
    row-major layout.
    """
    for module in model.modules():
        if isinstance(module, torch.nn.Linear) and module.weight.is_contiguous():
            transposed = module.weight.detach().t().contiguous().t()
            module.weight = torch.nn.Parameter(transposed, requires_grad=False)


class PackedLinear(torch.nn.Module):
    """A linear layer computed by MKL's packed-weight GEMM (``cblas_sgemm_compute``).

    A plain CPU matmul re-packs the weight matrix into MKL's blocked layout on every call, and
    that path also splits poorly over threads at decoding's row counts. Packing once is faster
    for every layer of the embedded model at two threads (measured here at 64 rows: 1.3-1.4x
    for the MLP and attention projections, 1.4-1.8x for the 49,152 x 576 output layer at 8-64
    rows; 1.4x on the whole generation benchmark, same text) and about even at one thread.
    The packed layout does not depend on the number of rows, so one packed copy serves every
    batch size.

    The op reads the original weight only for its shape when it computes with the packed copy
    (always, here: it is told the rows given), so unless the weight is shared (a tied output
    layer is the input embedding), a zero-strided placeholder of the same shape replaces it
    and the layer costs the memory of one copy, not two.
    """

    def __init__(self, linear: torch.nn.Linear, packed: torch.Tensor, *, shared: bool) -> None:
        super().__init__()
        weight = linear.weight
        self.weight = weight if shared else weight.new_zeros(()).expand(weight.shape)
        self.bias = linear.bias
        self.packed = packed

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        hidden = hidden.contiguous()
        # The last argument says how many rows the weight was packed for; the op computes with the
        # packed copy only when it equals the rows given (all leading dimensions), so pass those.
        rows = hidden.numel() // hidden.shape[-1]
        return torch.ops.mkl._mkl_linear(hidden, self.packed, self.weight, self.bias, rows)


def pack_linear_layers(model: Any) -> None:
    """Compute every float32 linear layer with MKL's packed GEMM where this torch has it (x86).

    Each distinct layer shape is first checked against the plain layer at a few batch sizes,
    so an MKL whose packed layout did depend on the row count leaves those layers as they were.
    """
    mkl = getattr(torch.ops, "mkl", None)
    if not torch.backends.mkl.is_available() or not hasattr(mkl, "_mkl_reorder_linear_weight"):
        return
    embedding = model.get_input_embeddings()
    tied = getattr(embedding, "weight", None)
    verdicts: dict[tuple[int, int, bool], bool] = {}
    with torch.no_grad():
        for parent in list(model.modules()):
            for name, linear in list(parent.named_children()):
                if type(linear) is not torch.nn.Linear or linear.weight.dtype != torch.float32:
                    continue
                shape = (linear.in_features, linear.out_features, linear.bias is not None)
                if verdicts.get(shape) is False:
                    continue
                weight = linear.weight.detach().contiguous()
                packed = mkl._mkl_reorder_linear_weight(weight, 64)
                candidate = PackedLinear(linear, packed, shared=linear.weight is tied)
                if shape not in verdicts:
                    verdicts[shape] = _same_outputs(candidate, linear)
                if verdicts[shape]:
                    setattr(parent, name, candidate)


def _same_outputs(candidate: torch.nn.Module, linear: torch.nn.Linear) -> bool:
    for rows in (1, 7, 64):
        probe = torch.randn(rows, linear.in_features, generator=torch.Generator().manual_seed(rows))
        if not torch.allclose(candidate(probe), linear(probe), rtol=1e-4, atol=1e-4):
            return False
    return True
