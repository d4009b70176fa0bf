"""Data nodes: file readers and writers, SQL, event streams, broker sources and writers.

Names are re-exported lazily, so ``from kailash.nodes.data import SQLDatabaseNode`` works
without importing every data module (or their optional dependencies) up front.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kailash._lazy import lazy_exports

_EXPORTS = {
    "CSVReaderNode": "kailash.nodes.data.readers", "JSONReaderNode": "kailash.nodes.data.readers", "TextReaderNode": "kailash.nodes.data.readers", "BatchStream": "kailash.nodes.data.readers",
    "CSVWriterNode": "kailash.nodes.data.writers", "JSONWriterNode": "kailash.nodes.data.writers", "TextWriterNode": "kailash.nodes.data.writers",
    "SQLDatabaseNode": "kailash.nodes.data.sql",
    "EventStreamNode": "kailash.nodes.data.streaming",
    "RedisStreamSourceNode": "kailash.nodes.data.brokers.redis_streams", "RedisStreamWriterNode": "kailash.nodes.data.brokers.redis_streams",
    "NATSJetStreamSourceNode": "kailash.nodes.data.brokers.nats_jetstream", "NATSJetStreamWriterNode": "kailash.nodes.data.brokers.nats_jetstream",
    "MQTTSourceNode": "kailash.nodes.data.brokers.mqtt", "MQTTWriterNode": "kailash.nodes.data.brokers.mqtt",
    "AMQPSourceNode": "kailash.nodes.data.brokers.amqp", "AMQPWriterNode": "kailash.nodes.data.brokers.amqp",
    "WindowNode": "kailash.nodes.data.windows",
}

__all__ = sorted(_EXPORTS)


if TYPE_CHECKING:  # what type checkers see; at run time each name is imported on first use
    from kailash.nodes.data.brokers.amqp import AMQPSourceNode as AMQPSourceNode
    from kailash.nodes.data.brokers.amqp import AMQPWriterNode as AMQPWriterNode
    from kailash.nodes.data.brokers.mqtt import MQTTSourceNode as MQTTSourceNode
    from kailash.nodes.data.brokers.mqtt import MQTTWriterNode as MQTTWriterNode
    from kailash.nodes.data.brokers.nats_jetstream import NATSJetStreamSourceNode as NATSJetStreamSourceNode
    from kailash.nodes.data.brokers.nats_jetstream import NATSJetStreamWriterNode as NATSJetStreamWriterNode
    from kailash.nodes.data.brokers.redis_streams import RedisStreamSourceNode as RedisStreamSourceNode
    from kailash.nodes.data.brokers.redis_streams import RedisStreamWriterNode as RedisStreamWriterNode
    from kailash.nodes.data.readers import BatchStream as BatchStream
    from kailash.nodes.data.readers import CSVReaderNode as CSVReaderNode
    from kailash.nodes.data.readers import JSONReaderNode as JSONReaderNode
    from kailash.nodes.data.readers import TextReaderNode as TextReaderNode
    from kailash.nodes.data.sql import SQLDatabaseNode as SQLDatabaseNode
    from kailash.nodes.data.streaming import EventStreamNode as EventStreamNode
    from kailash.nodes.data.windows import WindowNode as WindowNode
    from kailash.nodes.data.writers import CSVWriterNode as CSVWriterNode
    from kailash.nodes.data.writers import JSONWriterNode as JSONWriterNode
    from kailash.nodes.data.writers import TextWriterNode as TextWriterNode

__getattr__ = lazy_exports("kailash.nodes.data", _EXPORTS, globals())

