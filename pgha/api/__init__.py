"""The agent's HTTP API: health checks for load balancers, the cluster document, metrics.

It only reads: every change to the cluster goes through etcd, which has its own
authentication, so nothing here can alter a node or the cluster.
"""
