"""Request and response shapes of the HTTP API (they also make the OpenAPI document)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

from cellbox.runtimes import LANGUAGE_NAMES, resolve

MAX_TIMEOUT_MS = 600_000

# Checked by cellbox.sandbox.netpolicy (the route answers its errors on field "network").
NetworkPolicy = Any
NETWORK_HELP = (
    '"off", "public", or {"allow": ["api.example.com", "*.example.org", "198.51.100.0/24"]} '
    "(DNS names exact or by *. suffix, address ranges on any port). At most what the "
    "server's --network allows; its default when omitted."
)

Language = Annotated[
    StrictStr | None,
    Field(
        description="Language runtime; case-insensitive. "
        f"One of {', '.join(LANGUAGE_NAMES)}. Defaults to python (or the context's language)."
    ),
]


def _canonical_language(value: str | None) -> str | None:
    if value is None:
        return None
    runtime = resolve(value)
    if runtime is None:
        raise ValueError(f"unsupported language {value!r}; use one of: {', '.join(LANGUAGE_NAMES)}")
    return runtime.name


class ExecuteRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: StrictStr = Field(description="Source code to execute.")
    language: Language = None
    context_id: StrictStr | None = Field(
        default=None, description="Run in this existing context; a new one when omitted."
    )
    env_vars: dict[str, StrictStr] | None = Field(
        default=None, description="Environment variables visible to this execution only."
    )
    timeout_ms: StrictInt | None = Field(
        default=None, description=f"Execution timeout in milliseconds, 1 to {MAX_TIMEOUT_MS}."
    )

    _language = field_validator("language")(_canonical_language)

    @field_validator("env_vars")
    @classmethod
    def _environment_entries(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"{name!r} is not an environment variable name")
            if "\0" in text:
                raise ValueError(f"{name}: a value cannot contain a NUL character")
        return value

    @field_validator("timeout_ms")
    @classmethod
    def _timeout_in_range(cls, value: int | None) -> int | None:
        if value is not None and not 1 <= value <= MAX_TIMEOUT_MS:
            raise ValueError(f"must be between 1 and {MAX_TIMEOUT_MS}")
        return value


class CreateContextRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    language: Language = None
    cwd: StrictStr | None = Field(
        default=None, description="Absolute working directory as the context sees it."
    )
    network: NetworkPolicy | None = Field(default=None, description=NETWORK_HELP)

    packages: list[StrictStr] | None = Field(
        default=None,
        max_length=100,
        description="Installed before the context is handed out: PyPI requirements (Python) "
        "or npm package specs (TypeScript).",
    )

    _language = field_validator("language")(_canonical_language)

    @field_validator("packages")
    @classmethod
    def _package_specs(cls, value: list[str] | None) -> list[str] | None:
        for spec in value or []:
            if not spec.strip() or len(spec) > 1000:
                raise ValueError("each entry must be a non-empty package spec (at most 1000 chars)")
            if spec.lstrip().startswith("-") or any(ord(c) < 32 for c in spec):
                raise ValueError(f"not a package spec: {spec!r}")
        return value

    @field_validator("cwd")
    @classmethod
    def _absolute(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith("/"):
            raise ValueError("must be an absolute path")
        return value


class Item(BaseModel):
    is_primary: bool
    text: str | None = None
    html: str | None = None
    markdown: str | None = None
    svg: str | None = None
    png: str | None = Field(default=None, description="base64")
    jpeg: str | None = Field(default=None, description="base64")
    pdf: str | None = Field(default=None, description="base64")
    latex: str | None = None
    json_: Any = Field(default=None, alias="json")
    javascript: str | None = None
    extra: dict[str, Any] | None = None


class Logs(BaseModel):
    stdout: list[str]
    stderr: list[str]


class ExecutionError(BaseModel):
    name: str
    value: str
    traceback: str


class ExecuteResponse(BaseModel):
    context_id: str
    items: list[Item]
    logs: Logs
    error: ExecutionError | None
    execution_count: int


class ContextInfo(BaseModel):
    id: str
    language: str
    cwd: str
    network: NetworkPolicy = Field(description="What the context's code can reach.")


class ContextList(BaseModel):
    items: list[ContextInfo]


class FieldError(BaseModel):
    field: str
    error: str


class InvalidRequest(BaseModel):
    message: str = "Invalid request"
    errors: list[FieldError]


class Message(BaseModel):
    message: str


class Health(BaseModel):
    status: str
