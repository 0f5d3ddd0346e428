"""Online search: the gRPC contract's generated code, validation, auth, the client and the pipeline."""
