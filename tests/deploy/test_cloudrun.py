"""Cloud Run manifests and cloudbuild.yaml: well-formed, and consistent with the images and each other."""

from __future__ import annotations

import copy
import importlib.util
import re
from pathlib import Path

import pytest
import yaml

from tests.deploy.conftest import CLOUDRUN, ROOT

SERVICES = {"api": "service.yaml", "ui": "service-ui.yaml"}
RENDER = {"project": "demo-project", "region": "europe-west1", "repo": "images", "tag": "1a2b3c4"}


def container(service: dict) -> dict:
    containers = service["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def env_of(service: dict) -> dict[str, str | None]:
    return {e["name"]: e.get("value") for e in container(service).get("env", [])}


def annotations(service: dict) -> dict[str, str]:
    return service["spec"]["template"]["metadata"]["annotations"]


def built_images(cloudbuild: dict) -> dict[str, str]:
    """Dockerfile target -> the image reference cloudbuild.yaml tags it with."""
    images = {}
    for step in cloudbuild["steps"]:
        args = step.get("args", [])
        if step["name"].endswith("/docker") and args and args[0] == "build":
            flags = dict(a[2:].split("=", 1) for a in args if a.startswith("--") and "=" in a)
            images[flags["target"]] = flags["tag"]
    return images


def image_name(reference: str) -> str:
    """``.../repo/NAME:tag`` -> NAME."""
    return reference.rsplit("/", 1)[1].split(":")[0]


@pytest.fixture(scope="module")
def render():
    spec = importlib.util.spec_from_file_location("render", CLOUDRUN / "render.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.render


@pytest.fixture
def services(api_service, ui_service) -> dict[str, dict]:
    return {"api": api_service, "ui": ui_service}


@pytest.mark.parametrize("target", SERVICES)
def test_manifests_are_knative_services_on_port_8080(services, dockerfile, target):
    service = services[target]
    assert service["apiVersion"] == "serving.knative.dev/v1"
    assert service["kind"] == "Service"
    ports = [p["containerPort"] for p in container(service)["ports"]]
    assert ports == [int(dockerfile.env(target)["PORT"])] == sorted(dockerfile.exposed_ports(target))
    assert "PORT" not in env_of(service), "Cloud Run sets PORT itself and rejects it in env"


@pytest.mark.parametrize("target", SERVICES)
def test_scaling_and_resources_are_set(services, target):
    service = services[target]
    spec = service["spec"]["template"]["spec"]
    assert spec["containerConcurrency"] > 0
    notes = annotations(service)
    low, high = (int(notes[f"autoscaling.knative.dev/{k}"]) for k in ("minScale", "maxScale"))
    assert 0 <= low <= high
    assert notes["run.googleapis.com/startup-cpu-boost"] == "true"
    limits = container(service)["resources"]["limits"]
    assert float(limits["cpu"]) >= 1 and re.fullmatch(r"\d+(Mi|Gi)", limits["memory"])


def test_api_concurrency_matches_its_workers(api_service):
    """One sync worker per vCPU, each on one request; concurrency leaves a short queue on top."""
    workers = int(env_of(api_service)["CATDOG_WORKERS"])
    cpu = float(container(api_service)["resources"]["limits"]["cpu"])
    concurrency = api_service["spec"]["template"]["spec"]["containerConcurrency"]
    assert workers == cpu
    assert workers <= concurrency <= 8 * workers
    assert env_of(api_service)["CATDOG_THREADS"] == "1"


def test_api_probes_hit_endpoints_that_answer(api_service):
    from catdog.api import create_app

    client = create_app().test_client()
    probes = {k: container(api_service)[k]["httpGet"] for k in ("startupProbe", "livenessProbe")}
    assert probes["startupProbe"]["path"] == "/readyz"
    assert probes["livenessProbe"]["path"] == "/healthz"
    for probe in probes.values():
        assert probe["port"] == container(api_service)["ports"][0]["containerPort"]
        assert client.get(probe["path"]).status_code == 200, probe["path"]


def test_ui_probes_hit_streamlits_health_route(ui_service):
    spec = importlib.util.find_spec("streamlit")
    source = "".join(p.read_text() for p in Path(spec.origin).parent.rglob("*.py"))
    for kind in ("startupProbe", "livenessProbe"):
        path = container(ui_service)[kind]["httpGet"]["path"]
        assert path == "/_stcore/health" and path.lstrip("/") in source


def test_images_are_those_cloudbuild_builds(services, cloudbuild):
    built = built_images(cloudbuild)
    assert set(built) == set(SERVICES)
    for target, service in services.items():
        placeholder = container(service)["image"]
        assert placeholder.startswith("REGION-docker.pkg.dev/PROJECT_ID/catdog/")
        assert placeholder.endswith(":TAG")
        assert image_name(placeholder) == image_name(built[target])


def test_cloudbuild_builds_pushes_and_lists_the_same_images(cloudbuild):
    built = set(built_images(cloudbuild).values())
    pushed = {s["args"][1] for s in cloudbuild["steps"] if s.get("args", [None])[0] == "push"}
    assert built == pushed == set(cloudbuild["images"])
    for reference in built:
        assert reference.startswith("${_REGION}-docker.pkg.dev/$PROJECT_ID/${_REPO}/")
        assert reference.endswith(":$SHORT_SHA")


def test_cloudbuild_deploys_both_manifests_with_its_substitutions(cloudbuild, services):
    subs = cloudbuild["substitutions"]
    assert {"_REGION", "_REPO", "_SERVICE", "_UI_SERVICE"} <= set(subs)
    assert subs["_SERVICE"] == services["api"]["metadata"]["name"]
    assert subs["_UI_SERVICE"] == services["ui"]["metadata"]["name"]
    scripts = "\n".join(s["args"][-1] for s in cloudbuild["steps"] if s.get("entrypoint") == "bash")
    for manifest in SERVICES.values():
        assert f"deploy/cloudrun/{manifest}" in scripts and (CLOUDRUN / manifest).is_file()
    assert scripts.count("gcloud run services replace") == 2
    used = set(re.findall(r"\$\{(_\w+)\}", (ROOT / "cloudbuild.yaml").read_text()))
    assert used == set(subs), "every substitution is defined and used"


@pytest.mark.parametrize("target", SERVICES)
def test_render_fills_every_placeholder(services, cloudbuild, render, target):
    text = (CLOUDRUN / SERVICES[target]).read_text()
    out = yaml.safe_load(render(text, **RENDER, service=f"my-{target}", api_url="https://a.run.app/"))
    expected = (f"{RENDER['region']}-docker.pkg.dev/{RENDER['project']}/{RENDER['repo']}/"
                f"{image_name(built_images(cloudbuild)[target])}:{RENDER['tag']}")
    assert container(out)["image"] == expected
    assert out["metadata"]["name"] == f"my-{target}"
    assert RENDER["project"] in out["spec"]["template"]["spec"]["serviceAccountName"]
    # Nothing but the placeholders changed.
    original = copy.deepcopy(services[target])
    original["metadata"]["name"] = out["metadata"]["name"]
    container(original)["image"] = container(out)["image"]
    spec = original["spec"]["template"]["spec"]
    spec["serviceAccountName"] = out["spec"]["template"]["spec"]["serviceAccountName"]
    if target == "ui":
        assert env_of(out)["CATDOG_API_URL"] == "https://a.run.app"
        container(original)["env"] = container(out)["env"]
    assert out == original


def test_render_refuses_to_leave_the_ui_without_an_api_url(render):
    with pytest.raises(ValueError, match="API_SERVICE_URL"):
        render((CLOUDRUN / SERVICES["ui"]).read_text(), **RENDER)


def known_variables(dockerfile) -> set[str]:
    """CATDOG_* names something reads: a Settings field, gunicorn_conf, or an image's CMD."""
    from catdog.api import gunicorn_conf
    from catdog.config import Settings

    names = {f"CATDOG_{field.upper()}" for field in Settings.model_fields}
    names |= set(re.findall(r"CATDOG_\w+", Path(gunicorn_conf.__file__).read_text()))
    names |= {n for target in SERVICES for n in re.findall(r"CATDOG_\w+", " ".join(dockerfile.cmd(target)))}
    return names


def test_every_catdog_variable_set_is_one_the_code_reads(services, compose, dockerfile):
    configured = {name for service in services.values() for name in env_of(service)}
    configured |= {n for service in compose["services"].values() for n in service.get("environment", {})}
    configured |= {n for target in SERVICES for n in dockerfile.env(target)}
    unknown = {n for n in configured if n.startswith("CATDOG_")} - known_variables(dockerfile)
    assert not unknown, f"set but read by nothing (typo?): {sorted(unknown)}"
