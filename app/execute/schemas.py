"""Request and response schemas of execute (the OpenAPI document shows them)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

MAX_PAGE_SIZE = 100  # records one execute list returns at most
DEFAULT_LIMIT = 25


class ExecuteSchema(Schema):
    entity = fields.String(required=True, validate=validate.Length(min=1, max=255), metadata={
        "description": "The tap_stream_id of one of the source's streams."})
    action = fields.String(required=True, validate=validate.OneOf(["list", "get"]))
    params = fields.Dict(keys=fields.String(), load_default=dict, metadata={
        "description": f"list: `limit` (1 to {MAX_PAGE_SIZE}, default {DEFAULT_LIMIT}) and `cursor` (the previous "
                       "answer's); get: the stream's key fields."})


class PaginationSchema(Schema):
    cursor = fields.String(required=True, allow_none=True, metadata={
        "description": "Opaque; pass it as params.cursor for the next page. null: the last page."})


class ConnectorMetadataSchema(Schema):
    pagination = fields.Nested(PaginationSchema, required=True)


class ExecuteResultSchema(Schema):
    result = fields.Raw(required=True, metadata={
        "description": "list: an array of records; get: one record. Only the selected fields, keys always."})
    connector_metadata = fields.Nested(ConnectorMetadataSchema, required=True)
