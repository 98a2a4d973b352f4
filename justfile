# meshsim recipes; `just --list` shows this help.

python := ".venv/bin/python"

# Lint, type check and run the tests (the full local gate)
default: lint typecheck test

# Create the virtual environment with the development tools
setup:
    python3 -m venv .venv
    .venv/bin/pip install -q -e '.[dev]'

# Run the tests; arguments go to pytest (e.g. `just test -k pickers`)
test *args:
    {{python}} -m pytest {{args}}

# Run the tests not marked slow (no subprocesses, real servers or long waits); arguments go to pytest
test-fast *args:
    {{python}} -m pytest -m "not slow" {{args}}

# Lint and check formatting with ruff
lint:
    {{python}} -m ruff check meshsim tests benchmarks
    {{python}} -m ruff format --check meshsim tests benchmarks

# Format the code with ruff
fmt:
    {{python}} -m ruff format meshsim tests benchmarks
    {{python}} -m ruff check --fix meshsim tests benchmarks

# Type check with mypy (strict)
typecheck:
    {{python}} -m mypy

# Install what the proxy benchmark drives (h2load, nginx) with apt-get if they are missing
bench-tools:
    benchmarks/install-tools

# Run the benchmarks (simulator against SimPy, the simulator from 10 to 10,000 replicas, GrpcClient against a bare stub, the proxy against direct and nginx); figures go in docs/benchmarks.md
bench: bench-tools
    {{python}} benchmarks/sim_throughput.py
    {{python}} benchmarks/sim_scale.py
    {{python}} benchmarks/client_overhead.py
    {{python}} benchmarks/proxy_h2load.py

# Run a scenario (default: the failover scenario)
run scenario="scenarios/failover.toml" *args:
    .venv/bin/meshsim run {{scenario}} {{args}}

# Regenerate the protobuf and gRPC code in meshsim/pb from proto/ (tests/test_proto.py checks it is current)
proto:
    {{python}} -m grpc_tools.protoc -I proto --python_out=. --pyi_out=. --grpc_python_out=. proto/meshsim/pb/v1/mesh.proto

# Serve demo replicas of mesh.v1.MeshService (e.g. `just serve --replicas 3`)
serve *args:
    .venv/bin/meshsim serve {{args}}

# Check every shipped scenario file
validate:
    .venv/bin/meshsim validate scenarios/*.toml

# Run the proxy in front of replicas (e.g. `just live mesh.toml`, or a YAML config)
live config *args:
    .venv/bin/meshsim live {{config}} {{args}}

# Make a CA with server and client certificates for mTLS (e.g. `just certs certs`)
certs dir="certs" *args:
    .venv/bin/meshsim certs init {{dir}} {{args}}
