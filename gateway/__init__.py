"""llm-gateway core: the public surface for plugin and adapter authors."""

__version__ = "0.1.0"

from gateway.adapter import (
    Chunk,
    NoOptions,
    ProviderAdapter,
    StreamTranslator,
    UpstreamRequest,
)
from gateway.context import Outcome, Principal, RequestContext, StashKey, Usage
from gateway.dialect import ChunkEncoder, Dialect, DialectRequest, NativeCall, RelayEncoder, StreamEncoder
from gateway.errors import (
    AuthenticationError,
    GatewayError,
    InvalidRequestError,
    PermissionDeniedError,
    RateLimitError,
    UnsupportedOperation,
    UpstreamError,
)
from gateway.hookspecs import hookimpl
from gateway.runtime import ShortCircuit

__all__ = [
    "AuthenticationError",
    "Chunk",
    "ChunkEncoder",
    "Dialect",
    "DialectRequest",
    "GatewayError",
    "InvalidRequestError",
    "NativeCall",
    "NoOptions",
    "Outcome",
    "PermissionDeniedError",
    "Principal",
    "ProviderAdapter",
    "RateLimitError",
    "RelayEncoder",
    "RequestContext",
    "ShortCircuit",
    "StashKey",
    "StreamEncoder",
    "StreamTranslator",
    "UnsupportedOperation",
    "UpstreamError",
    "UpstreamRequest",
    "Usage",
    "__version__",
    "hookimpl",
]
