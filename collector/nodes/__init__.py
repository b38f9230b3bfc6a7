"""The nodes the controller reaches: inventory, registry, host keys, the lease, connection tests, transports."""
