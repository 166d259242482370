"""Pydantic bases for Palette's camelCase JSON, and the metadata every resource shares."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, PlainSerializer
from pydantic.alias_generators import to_camel

from keyplane.kit.time import rfc3339

Rfc3339 = Annotated[datetime, PlainSerializer(rfc3339, return_type=str)]


class PaletteModel(BaseModel):
    # Palette clients (its Go SDK among them) send metadata fields that Keyplane does not
    # use, such as labels or zero timestamps: they are ignored rather than refused.
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class ObjectMeta(PaletteModel):
    uid: str
    name: str
    annotations: dict[str, str] = Field(default_factory=dict)
    creation_timestamp: Rfc3339
    last_modified_timestamp: Rfc3339


class Uid(PaletteModel):
    uid: str
