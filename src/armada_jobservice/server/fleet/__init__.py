"""Several replicas on one PostgreSQL database: leases, fencing, followers and takeover."""
