"""The long-running consumer: Kafka topics -> decode -> validate -> filter -> transform -> MongoDB.

`python -m consumer` runs one group member. The decisions (consumer.pipeline and the modules it
uses) are pure; consumer.kafka_source and consumer.mongo_store are the I/O adapters;
consumer.bootstrap wires them into consumer.service.
"""
