"""A scenario played for real (`meshsim run --live`): its replicas as grpc.aio servers on
loopback, its clients through the runtime's assembly over the live transport, its faults
at their times in wall time. The live counterpart of meshsim.sim."""
