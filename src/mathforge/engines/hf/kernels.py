"""CPU kernels for models the hf engine loads itself: linear layers on prepacked weights (MKL's
packed GEMM in float32, oneDNN's in bf16), or float32 weights stored transposed where MKL is
missing, all giving the same outputs faster at decoding's row counts."""

from __future__ import annotations

from typing import Any

import torch


def store_linear_weights_transposed(model: Any) -> None:
    """Keep each float32 linear layer's weight as the transpose of an (in, out) row-major matrix.

    ``F.linear`` computes ``x @ W.T``; with ``W`` stored (out, in) row-major, MKL's CPU matmul
    takes a path that costs as much at 16-48 rows as at 64 (measured here: 1.1-1.5 ms for a
    576x1536 layer at every batch size under 64, against 0.25-0.8 ms with the transposed layout).
    Decoding shrinks the batch as rows finish, so most steps run in that range. This serves the
    float32 layers :func:`pack_linear_layers` leaves as they are (no MKL). bf16 layers stay
    row-major: oneDNN's bf16 matmul is slower on the transposed layout (measured on an AMX CPU,
    576x1536 at 16 rows: 183 us against 107). Only for models the engine loads itself: a
    caller's model (a policy in training) keeps its own parameters. A tied output layer gets
    its own copy, since the input embedding needs the row-major layout.
    """
    for module in model.modules():
        if (
            isinstance(module, torch.nn.Linear)
            and module.weight.dtype == torch.float32
            and module.weight.is_contiguous()
        ):
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


class PackedBF16Linear(PackedLinear):
    """A bf16 linear layer computed by oneDNN on a weight prepacked into its blocked layout
    (``mkldnn._linear_pointwise``, the op inductor's CPU freezing uses for bf16 weights).

    Like :class:`PackedLinear` (whose weight placeholder it shares), packing once spares the
    per-call reordering: measured on a 2-core AMX CPU against plain ``F.linear`` in bf16, same
    outputs bit for bit, 1.3x (576 x 1536 at 64 rows) to 1.8x (at 16 rows), 2.9x for 1536 x 576
    at 64 rows and 1.8x for the 49,152 x 576 output layer. The pack is made for 64 rows and
    serves every row count.
    """

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.ops.mkldnn._linear_pointwise(hidden.contiguous(), self.packed, self.bias, "none", [], "")


def pack_linear_layers(model: Any) -> None:
    """Compute every linear layer on a prepacked weight where this torch can: float32 layers on
    MKL's packed GEMM, bf16 layers on oneDNN's (x86 builds).

    Each distinct layer shape and dtype is first checked against the plain layer at a few batch
    sizes, so a library whose packed layout did depend on the row count, or a CPU where oneDNN
    cannot run bf16 (it raises), leaves those layers as they were.
    """
    embedding = model.get_input_embeddings()
    tied = getattr(embedding, "weight", None)
    verdicts: dict[tuple[int, int, bool, torch.dtype], bool] = {}
    with torch.no_grad():
        for parent in list(model.modules()):
            for name, linear in list(parent.named_children()):
                if type(linear) is not torch.nn.Linear:
                    continue
                dtype = linear.weight.dtype
                shape = (linear.in_features, linear.out_features, linear.bias is not None, dtype)
                if verdicts.get(shape) is False or not _can_pack(dtype):
                    continue
                try:
                    candidate = _packed(linear, shared=linear.weight is tied)
                    if shape not in verdicts:
                        verdicts[shape] = _same_outputs(candidate, linear)
                except RuntimeError:  # e.g. no oneDNN bf16 kernel for this CPU
                    verdicts[shape] = False
                if verdicts[shape]:
                    setattr(parent, name, candidate)


def _can_pack(dtype: torch.dtype) -> bool:
    if dtype == torch.float32:
        mkl = getattr(torch.ops, "mkl", None)
        return torch.backends.mkl.is_available() and hasattr(mkl, "_mkl_reorder_linear_weight")
    if dtype == torch.bfloat16:
        return torch.backends.mkldnn.is_available() and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
    return False


def _packed(linear: torch.nn.Linear, *, shared: bool) -> torch.nn.Module:
    weight = linear.weight.detach().contiguous()
    if weight.dtype == torch.float32:
        return PackedLinear(linear, torch.ops.mkl._mkl_reorder_linear_weight(weight, 64), shared=shared)
    return PackedBF16Linear(linear, torch.ops.mkldnn._reorder_linear_weight(weight, 64), shared=shared)


def _same_outputs(candidate: torch.nn.Module, linear: torch.nn.Linear) -> bool:
    # bf16 keeps 8 bits of mantissa: a reordered sum may differ in the last bit of a value.
    tolerance = 1e-4 if linear.weight.dtype == torch.float32 else 2e-2
    for rows in (1, 7, 64):
        probe = torch.randn(rows, linear.in_features, generator=torch.Generator().manual_seed(rows))
        probe = probe.to(linear.weight.dtype)
        if not torch.allclose(candidate(probe), linear(probe), rtol=tolerance, atol=tolerance):
            return False
    return True
