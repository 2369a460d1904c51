"""A PredictionService that runs no model: the gRPC floor of bench.serving_load.

    python -m bench.null_server --port=N

Answers every Predict at once with P = 0 for each row of its first input,
on the same stack as serving.server (grpc.aio, the official protos), with no
model and no checks. What a client measures against it is the cost of the
Python gRPC round trip alone (client stub, loopback, server event loop,
protos): the part of the model server's overhead over the bare model call
that no server logic can remove. Binds 127.0.0.1 only; exits on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Sequence

import grpc
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

from models.contract import OUTPUT_KEY
from pipeline.config import OneLineParser

__all__ = ["answer", "main"]


def answer(request: predict_pb2.PredictRequest) -> predict_pb2.PredictResponse:
    """P = 0.0 for each row of the request's first input (float32 [rows])."""
    rows = next(iter(request.inputs.values())).tensor_shape.dim[0].size if request.inputs else 0
    response = predict_pb2.PredictResponse()
    response.model_spec.CopyFrom(request.model_spec)
    output = response.outputs[OUTPUT_KEY]
    output.dtype = types_pb2.DT_FLOAT
    output.tensor_shape.dim.add().size = rows
    output.float_val.extend([0.0] * rows)
    return response


class _Null(prediction_service_pb2_grpc.PredictionServiceServicer):
    async def Predict(self, request: predict_pb2.PredictRequest,
                      context: grpc.aio.ServicerContext) -> predict_pb2.PredictResponse:
        return answer(request)


async def _serve(port: int) -> None:
    server = grpc.aio.server()
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(_Null(), server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    await stop.wait()
    await server.stop(5)


def main(argv: Sequence[str] | None = None) -> int:
    parser = OneLineParser(prog="python -m bench.null_server", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args(argv)
    asyncio.run(_serve(args.port))
    return 0


if __name__ == "__main__":
    sys.exit(main())
