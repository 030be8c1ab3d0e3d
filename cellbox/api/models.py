"""Request and response shapes of the HTTP API (they also make the OpenAPI document)."""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    WithJsonSchema,
    field_validator,
)

from cellbox.runtimes import LANGUAGE_NAMES, resolve
from cellbox.sandbox.netpolicy import MAX_ALLOW_ENTRIES

MAX_TIMEOUT_MS = 600_000
MAX_PACKAGE_SPEC = 1000
# A package spec: no control character, something besides blanks, no leading "-" (an
# installer option). Written for both Python's re and the JSON Schema (ECMA) dialect.
PACKAGE_SPEC = r"^[^\S\x00-\x1f]*[^\s\x00-\x1f-][^\x00-\x1f]*$"
# What a process environment can hold: a name without "=", no NUL anywhere.
ENV_NAME = r"^[^=\x00]+$"
ENV_VALUE = r"^[^\x00]*$"

_ALLOWLIST = {
    "type": "object",
    "properties": {
        "allow": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_ALLOW_ENTRIES}
    },
    "required": ["allow"],
    "additionalProperties": False,
}
# Checked by cellbox.sandbox.netpolicy (the route answers its errors on field "network");
# the schemas only document what it accepts and what a context's body shows.
NetworkPolicy = Annotated[
    Any, WithJsonSchema({"anyOf": [{"enum": ["off", "public"]}, _ALLOWLIST, {"type": "null"}]})
]
NetworkShown = Annotated[
    Any, WithJsonSchema({"anyOf": [{"enum": ["off", "public", "host"]}, _ALLOWLIST]})
]
NETWORK_HELP = (
    '"off", "public", or {"allow": ["api.example.com", "*.example.org", "198.51.100.0/24"]} '
    "(DNS names exact or by *. suffix, address ranges on any port). At most what the "
    "server's --network allows; its default when omitted."
)


def _any_case(name: str) -> str:
    return "".join(f"[{c.lower()}{c.upper()}]" if c.isalpha() else re.escape(c) for c in name)


Language = Annotated[
    StrictStr | None,
    Field(
        description="Language runtime; case-insensitive. "
        f"One of {', '.join(LANGUAGE_NAMES)}. Defaults to python (or the context's language).",
        # resolve() takes any case and surrounding blanks: the pattern says the same.
        json_schema_extra={"pattern": rf"^\s*({'|'.join(map(_any_case, LANGUAGE_NAMES))})\s*$"},
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
        default=None,
        description="Environment variables visible to this execution only.",
        json_schema_extra={  # _environment_entries
            "propertyNames": {"pattern": ENV_NAME},
            "additionalProperties": {"type": "string", "pattern": ENV_VALUE},
        },
    )
    timeout_ms: StrictInt | None = Field(
        default=None,
        description=f"Execution timeout in milliseconds, 1 to {MAX_TIMEOUT_MS}.",
        json_schema_extra={"minimum": 1, "maximum": MAX_TIMEOUT_MS},  # _timeout_in_range
    )

    _language = field_validator("language")(_canonical_language)

    @field_validator("env_vars")
    @classmethod
    def _environment_entries(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for name, text in (value or {}).items():
            if not re.fullmatch(ENV_NAME, name):
                raise ValueError(f"{name!r} is not an environment variable name")
            if not re.fullmatch(ENV_VALUE, text):
                raise ValueError(f"{name}: a value cannot contain a NUL character")
        return value

    @field_validator("timeout_ms", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        # JSON has one kind of number: 30000.0 is the integer 30000 (to JSON Schema as well).
        return int(value) if isinstance(value, float) and value.is_integer() else value

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
        default=None,
        description="Absolute working directory as the context sees it.",
        json_schema_extra={"pattern": "^/"},  # _absolute
    )
    network: NetworkPolicy | None = Field(default=None, description=NETWORK_HELP)

    packages: list[StrictStr] | None = Field(
        default=None,
        max_length=100,
        description="Installed before the context is handed out: PyPI requirements (Python) "
        "or npm package specs (TypeScript).",
        json_schema_extra={  # _package_specs
            "items": {"type": "string", "maxLength": MAX_PACKAGE_SPEC, "pattern": PACKAGE_SPEC}
        },
    )

    _language = field_validator("language")(_canonical_language)

    @field_validator("packages")
    @classmethod
    def _package_specs(cls, value: list[str] | None) -> list[str] | None:
        for spec in value or []:
            if not spec.strip() or len(spec) > MAX_PACKAGE_SPEC:
                raise ValueError(
                    f"each entry must be a non-empty package spec (at most {MAX_PACKAGE_SPEC} chars)"
                )
            if not re.fullmatch(PACKAGE_SPEC, spec):
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
    network: NetworkShown = Field(description="What the context's code can reach.")


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
