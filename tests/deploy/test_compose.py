"""compose.yaml runs the two images the Dockerfile builds, wired to each other."""

from __future__ import annotations

from urllib.parse import urlsplit


def published(service: dict) -> dict[int, int]:
    """container port -> host port, from ``"[ADDRESS:]HOST:CONTAINER"`` entries."""
    pairs = (str(p).split(":")[-2:] for p in service["ports"])
    return {int(container): int(host) for host, container in pairs}


def test_services_build_the_dockerfile_targets(compose, dockerfile):
    services = compose["services"]
    assert set(services) == {"api", "ui"}
    for name, service in services.items():
        assert service["build"]["context"] == "."
        assert service["build"]["target"] == name
        assert name in {s.name for s in dockerfile.stages}
    assert services["api"]["image"] == "cat_dog_classifier"  # as `docker build -t` in the docs


def test_ports_publish_the_containers_port(compose, dockerfile):
    for name, host in (("api", 8000), ("ui", 8501)):
        container_port = int(dockerfile.env(name)["PORT"])
        assert published(compose["services"][name]) == {container_port: host}


def test_ports_are_published_on_localhost_only(compose):
    """The API runs without a key here: it must not face the network by default (issue 17)."""
    for service in compose["services"].values():
        for entry in service["ports"]:
            assert str(entry).startswith("127.0.0.1:"), entry


def test_the_ui_reaches_the_api_by_service_name(compose, dockerfile):
    url = urlsplit(compose["services"]["ui"]["environment"]["CATDOG_API_URL"])
    assert (url.scheme, url.hostname) == ("http", "api")
    assert url.port == int(dockerfile.env("api")["PORT"])


def test_the_ui_waits_for_a_healthy_api(compose, dockerfile):
    services = compose["services"]
    assert services["ui"]["depends_on"]["api"]["condition"] == "service_healthy"
    check = services["api"]["healthcheck"]
    # Either its own test on /healthz or the image's HEALTHCHECK (inherited when `test` is absent).
    test = check.get("test") or dockerfile.healthcheck("api")
    assert "/healthz" in " ".join(test)


def test_cors_allows_the_local_ui_origin(compose):
    origins = compose["services"]["api"]["environment"]["CATDOG_CORS_ORIGINS"].split(",")
    ui_host_port = published(compose["services"]["ui"])
    assert [f"http://localhost:{port}" for port in ui_host_port.values()] == origins
