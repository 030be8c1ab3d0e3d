"""Python client of the cellbox HTTP API: :class:`Client` (blocking) and :class:`AsyncClient`.

```python
from cellbox.client import Client

with Client() as client, client.contexts.create("python") as ctx:
    ctx.execute("x = 41")
    print(ctx.execute("x + 1").text)  # 42
```
"""

from cellbox.client.aio import AsyncClient, AsyncContext, AsyncExecutionStream, AsyncFiles
from cellbox.client.errors import (
    APIError,
    CellboxError,
    ConfigurationError,
    ConnectionFailed,
    ContextNotFound,
    FieldError,
    FileNotFound,
    Forbidden,
    InsufficientStorage,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    RequestTimeout,
    ServiceUnavailable,
    StreamClosed,
    TooManyContexts,
    Unauthorized,
)
from cellbox.client.models import (
    ContextInfo,
    Error,
    Event,
    Execution,
    ExecutionError,
    Exit,
    FileInfo,
    Item,
    Logs,
    Result,
    Stderr,
    Stdout,
    Unpacked,
    Uploaded,
)
from cellbox.client.sync import Client, Context, ExecutionStream, Files

__all__ = [
    "APIError",
    "AsyncClient",
    "AsyncContext",
    "AsyncExecutionStream",
    "AsyncFiles",
    "CellboxError",
    "Client",
    "ConfigurationError",
    "ConnectionFailed",
    "Context",
    "ContextInfo",
    "ContextNotFound",
    "Error",
    "Event",
    "Execution",
    "ExecutionError",
    "ExecutionStream",
    "Exit",
    "FieldError",
    "FileInfo",
    "FileNotFound",
    "Forbidden",
    "Files",
    "InsufficientStorage",
    "InvalidRequest",
    "Item",
    "Logs",
    "NotFound",
    "PayloadTooLarge",
    "RequestTimeout",
    "Result",
    "ServiceUnavailable",
    "Stderr",
    "Stdout",
    "StreamClosed",
    "TooManyContexts",
    "Unauthorized",
    "Unpacked",
    "Uploaded",
]
