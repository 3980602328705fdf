"""The node runtime: storage, gRPC services and transport, many shard replicas per process."""
