"""gRPC names as short as a screen needs: "mesh.v1.MeshService" is "MeshService", and
"/mesh.v1.MeshService/Process" is "MeshService/Process", unless another package on the
same screen has a MeshService too, when both keep as many parts as tell them apart.
"""

from __future__ import annotations

from collections.abc import Iterable


def short_services(names: Iterable[str]) -> dict[str, str]:
    """Each dotted service name by the fewest of its last parts that no other name ends with."""
    distinct = sorted(set(names))
    shortened = {}
    for name in distinct:
        parts = name.split(".")
        for keep in range(1, len(parts) + 1):
            tail = ".".join(parts[-keep:])
            if not any(other != name and (other == tail or other.endswith("." + tail)) for other in distinct):
                break
        shortened[name] = tail
    return shortened


def short_methods(paths: Iterable[str]) -> dict[str, str]:
    """Each method path ("/pkg.Service/Method") as "Service/Method", its service shortened as above;
    a path of another shape is kept as it is."""
    distinct = sorted(set(paths))
    split = {path: path.lstrip("/").rpartition("/") for path in distinct}
    services = short_services(service for service, slash, _ in split.values() if slash)
    return {
        path: f"{services[service]}/{method}" if slash else path for path, (service, slash, method) in split.items()
    }
