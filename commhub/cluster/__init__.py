"""Several nodes: a node registry, room leases and routing in Redis (README "Several nodes")."""

from commhub.cluster.cluster import HERE, Cluster, Load, Route, Unroutable
from commhub.cluster.nodes import Node
from commhub.cluster.redis import ClusterError, connect

__all__ = ["HERE", "Cluster", "ClusterError", "Load", "Node", "Route", "Unroutable", "connect"]
