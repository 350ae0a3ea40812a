"""Generated gRPC code for jobservice.proto (see scripts/gen_protos.py)."""
