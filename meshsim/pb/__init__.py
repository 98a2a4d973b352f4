"""Generated protobuf and gRPC code (`just proto`); imported only by meshsim.live."""
