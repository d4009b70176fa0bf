"""Broker sources and writers: Redis Streams, NATS JetStream, MQTT (QoS 1), AMQP (RabbitMQ).

Each source is a stream source (:mod:`kailash.nodes.data.stream_source`): a stream run
opens it once and acknowledges each event after the nodes downstream of it finished,
so a crash loses nothing (at-least-once; see docs/brokers.md for what can be seen twice).
Each writer publishes one event per run and waits for the broker's confirmation.
The clients are optional (``pip install 'kailash[streams]'``) and imported when a node
connects, never when this package is imported.
"""

from __future__ import annotations

from kailash._lazy import lazy_exports

_EXPORTS = {
    "RedisStreamSourceNode": "kailash.nodes.data.brokers.redis_streams",
    "RedisStreamWriterNode": "kailash.nodes.data.brokers.redis_streams",
    "NATSJetStreamSourceNode": "kailash.nodes.data.brokers.nats_jetstream",
    "NATSJetStreamWriterNode": "kailash.nodes.data.brokers.nats_jetstream",
    "MQTTSourceNode": "kailash.nodes.data.brokers.mqtt",
    "MQTTWriterNode": "kailash.nodes.data.brokers.mqtt",
    "AMQPSourceNode": "kailash.nodes.data.brokers.amqp",
    "AMQPWriterNode": "kailash.nodes.data.brokers.amqp",
}

__all__ = sorted(_EXPORTS)

__getattr__ = lazy_exports("kailash.nodes.data.brokers", _EXPORTS, globals())
