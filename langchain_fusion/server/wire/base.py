"""The base of our wire models: optional fields left out when empty, required ones kept."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, SerializerFunctionWrapHandler, model_serializer


class WireModel(BaseModel):
    """A hosted-schema object. A field with a default is optional on the wire: absent when
    it is `None`. A field without one is required: sent even when it is `None` (nullable)."""

    model_config = ConfigDict(extra="forbid")

    @model_serializer(mode="wrap")
    def _omit_empty_optionals(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name, info in type(self).model_fields.items():
                key = info.serialization_alias or info.alias or name
                if not info.is_required() and data.get(key, ...) is None:
                    del data[key]
        return data

    def wire(self) -> dict[str, Any]:
        """The JSON object to send."""
        data: dict[str, Any] = self.model_dump(mode="json", by_alias=True)
        return data
