"""The peers' model variants and the sizes the rows report, made in the parent before any row is
measured: PyTorch's and ONNX Runtime's dynamic int8 of the fp32 model, and a deployable's
weight bytes per dtype."""

from __future__ import annotations

import io
from pathlib import Path

import torch
from torch import nn

from tinyasr.compile.onnx_export import DECODE_ONNX, ENCODE_ONNX, quietly
from tinyasr.model.network.model_dir import load_model_dir
from tinyasr.model.network.san_m import AsrModel


def quantize_torch_dynamic(model: AsrModel) -> AsrModel:
    """PyTorch's dynamic int8: every nn.Linear (int8 weights, activations rounded per call);
    the fbank's fixed matrices are buffers, not Linear layers, and stay fp32."""
    with quietly():
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8,
                                                      inplace=True)


def torch_int8_bytes(model_dir: Path) -> int:
    """Bytes of the dynamically quantized model's saved state dict."""
    buffer = io.BytesIO()
    torch.save(quantize_torch_dynamic(load_model_dir(model_dir)[0]).state_dict(), buffer)
    return buffer.tell()


def quantize_onnx(fp32_dir: Path, out_dir: Path) -> None:
    """ORT's dynamic int8 of the exported graphs: the weight MatMuls (the Linear layers) become
    MatMulInteger; the fbank's fixed mel matrix stays fp32, as in every other int8 row."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    out_dir.mkdir(parents=True, exist_ok=True)
    with quietly():
        for name in (ENCODE_ONNX, DECODE_ONNX):
            quantize_dynamic(fp32_dir / name, out_dir / name, weight_type=QuantType.QInt8,
                             op_types_to_quantize=["MatMul", "Gemm"],
                             nodes_to_exclude=["/fbank/MatMul"])


def weight_bytes_by_dtype(deployable: Path) -> dict[str, int]:
    """Bytes of a deployable's weights file per dtype: shows whether int8 weights stayed int8."""
    import tvm

    from tinyasr.compile.deployable import WEIGHTS_FILE

    totals: dict[str, int] = {}
    for tensor in tvm.runtime.load_param_dict_from_file(str(deployable / WEIGHTS_FILE)).values():
        totals[str(tensor.dtype)] = totals.get(str(tensor.dtype), 0) + tensor.numpy().nbytes
    return totals
