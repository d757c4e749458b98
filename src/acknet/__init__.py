"""acknet: the container network of an Alibaba Cloud ACK cluster, real on one Linux host, and explained.

Layers (DESIGN.md), bottom up; each imports only those before it, enforced by import-linter:
model -> store -> controllers -> dataplane.render -> dataplane.apply / observe -> analysis -> daemon, api, cli.
"""

__version__ = "0.1.0"
