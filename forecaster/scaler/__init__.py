"""KEDA external scaler (gRPC) serving planned loads from published forecasts.

``externalscaler.proto`` is KEDA's protocol; the ``externalscaler_pb2*`` modules are
generated from it and committed. Regenerate them after editing the .proto with
``make proto``, which runs from the repository root::

    python -m grpc_tools.protoc -I. --python_out=. --pyi_out=. --grpc_python_out=. \
        forecaster/scaler/externalscaler.proto

The generated code needs grpcio >= the grpcio-tools version that generated it.
"""
