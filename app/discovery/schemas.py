from marshmallow import Schema, fields, validate

from ..schemas import Timestamp


class CheckErrorSchema(Schema):
    type = fields.String(required=True)
    message = fields.String(required=True)


class ConnectionCheckSchema(Schema):
    id = fields.Integer(required=True)
    status = fields.String(required=True, validate=validate.OneOf(["queued", "running", "succeeded", "failed"]))
    error = fields.Nested(CheckErrorSchema, allow_none=True, metadata={
        "description": "The latest failed attempt's error. It stays while the next attempt is queued or "
                       "running (a retry during an outage) and is null once an attempt succeeds."})
    error_at = Timestamp(allow_none=True, metadata={"description": "When the attempt that gave error failed."})
    attempts = fields.Integer(required=True, metadata={
        "description": "Attempts started so far (0 while the first is queued)."})
    stream_count = fields.Integer(allow_none=True)
    created_at = Timestamp(required=True)
    started_at = Timestamp(allow_none=True, metadata={"description": "When the latest attempt started."})
    completed_at = Timestamp(allow_none=True)


STREAM_PAGE_DEFAULT = 1000  # a small source's streams come in one page
STREAM_PAGE_MAX = 1000


class StreamListArgsSchema(Schema):
    limit = fields.Integer(load_default=STREAM_PAGE_DEFAULT, validate=validate.Range(min=1, max=STREAM_PAGE_MAX))
    cursor = fields.String(load_default=None, validate=validate.Length(min=1, max=64))


class StreamSummarySchema(Schema):
    stream_id = fields.Integer(required=True)
    tap_stream_id = fields.String(required=True)
    stream_name = fields.String(required=True)
    selected = fields.Boolean(required=True, allow_none=True, metadata={
        "description": "null until the stream is chosen either way (true when it is on by default)."})
    metadata = fields.Dict(required=True, metadata={"description": "The stream-level metadata."})


class MetadataEntrySchema(Schema):
    breadcrumb = fields.List(fields.String(), required=True)
    metadata = fields.Dict(required=True)


class StreamSchema(Schema):
    stream_id = fields.Integer(required=True)
    tap_stream_id = fields.String(required=True)
    schema = fields.Dict(required=True)
    metadata = fields.List(fields.Nested(MetadataEntrySchema), required=True)
    non_discoverable_metadata_keys = fields.List(fields.String(), required=True,
                                                 data_key="non-discoverable-metadata-keys")


class MetadataWriteSchema(Schema):
    breadcrumb = fields.List(fields.String(validate=validate.Length(max=255)), required=True,
                             validate=validate.Length(max=10))
    metadata = fields.Dict(keys=fields.String(), required=True)


class StreamWriteSchema(Schema):
    tap_stream_id = fields.String(required=True, validate=validate.Length(min=1, max=255))
    metadata = fields.List(fields.Nested(MetadataWriteSchema), required=True, validate=validate.Length(max=10_000))


class SelectionSchema(Schema):
    streams = fields.List(fields.Nested(StreamWriteSchema), required=True, validate=validate.Length(min=1, max=1000))


class CatalogEntrySchema(Schema):
    """A Singer catalog entry; the tap's other keys of the entry (``table_name``, ``replication_method``
    …) are kept as the tap reported them at discovery."""

    tap_stream_id = fields.String(required=True)
    stream = fields.String(required=True)
    schema = fields.Dict(required=True)
    metadata = fields.List(fields.Nested(MetadataEntrySchema), required=True, metadata={
        "description": "Singer metadata with the effective `selected` on every breadcrumb and the chosen "
                       "`replication-method` / `replication-key` at the stream level."})
    key_properties = fields.List(fields.String())
    replication_method = fields.String()
    replication_key = fields.String()


class SingerCatalogSchema(Schema):
    streams = fields.List(fields.Nested(CatalogEntrySchema), required=True)
