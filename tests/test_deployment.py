"""compose.yaml, the Dockerfile and .dockerignore say what docs/deployment.md says they do.

No Docker here: the files are parsed and checked against the real CLI parser and settings, so a
renamed command, option or setting, a lost health check or a wrong start order fails a test.
"""

from __future__ import annotations

import json
import re
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
import yaml

from forecast.cli import build_parser
from forecast.settings import load_settings

ROOT = Path(__file__).resolve().parent.parent
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
SERVICES: dict[str, dict[str, Any]] = COMPOSE["services"]
FORECAST_SERVICES = ("init", "api", "scheduler")
LONG_RUNNING = ("api", "scheduler")


def _dockerfile() -> list[tuple[str, str]]:
    """The Dockerfile's instructions as (KEYWORD, rest), continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in (ROOT / "Dockerfile").read_text(encoding="utf-8").splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        keyword, _, rest = (pending + line).strip().partition(" ")
        out.append((keyword.upper(), rest.strip()))
        pending = ""
    return out


DOCKERFILE = _dockerfile()


def _interpolate(text: str) -> str:
    """Compose variable substitution with an empty environment: ``${VAR:-default}`` and
    ``${VAR-default}`` give the default, ``${VAR}`` gives ''."""
    return re.sub(r"\$\{[A-Za-z_][A-Za-z0-9_]*(?::?-([^}]*))?\}", lambda m: m.group(1) or "",
                  text)


def _seconds(duration: str) -> float:
    """A compose duration such as ``1m30s``, ``40m`` or ``5s``."""
    parts = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?", str(duration))
    assert parts and any(parts.groups()), f"not a compose duration: {duration!r}"
    h, m, s = (int(g or 0) for g in parts.groups())
    return 3600 * h + 60 * m + s


def _condition(service: str, on: str) -> str | None:
    deps = SERVICES[service].get("depends_on", {})
    assert isinstance(deps, dict), f"{service}: depends_on must name conditions"
    dep = deps.get(on)
    return dep.get("condition") if isinstance(dep, dict) else None


def _healthcheck_argv(service: str) -> list[str]:
    test = SERVICES[service]["healthcheck"]["test"]
    assert isinstance(test, list) and test[0] == "CMD", f"{service}: exec-form test expected"
    return [str(a) for a in test[1:]]


def _forecast_commands() -> list[tuple[str, list[str]]]:
    """Every ``forecast …`` command line that the deployment runs."""
    found: list[tuple[str, list[str]]] = []
    for name, svc in SERVICES.items():
        if isinstance(svc.get("command"), list) and svc["command"][0] == "forecast":
            found.append((f"compose {name} command", svc["command"]))
        test = svc.get("healthcheck", {}).get("test")
        if isinstance(test, list) and len(test) > 1 and test[1] == "forecast":
            found.append((f"compose {name} healthcheck", test[1:]))
    found.append(("Dockerfile CMD", _dockerfile_cmd()))
    return found


def _dockerfile_cmd() -> list[str]:
    cmds = [rest for kw, rest in DOCKERFILE if kw == "CMD"]
    assert cmds, "the Dockerfile has no CMD"
    argv = json.loads(cmds[-1])
    assert isinstance(argv, list), "CMD must be in exec (JSON) form"
    return [str(a) for a in argv]


def test_services_are_the_four_of_the_deployment() -> None:
    assert set(SERVICES) == {"db", "init", *LONG_RUNNING}


def test_forecast_services_use_one_image_built_from_this_dockerfile() -> None:
    builds = {json.dumps(SERVICES[s].get("build"), sort_keys=True) for s in FORECAST_SERVICES}
    images = {SERVICES[s].get("image") for s in FORECAST_SERVICES}
    assert len(builds) == 1 and len(images) == 1, (builds, images)
    build = SERVICES["init"]["build"]
    context = build if isinstance(build, str) else build.get("context", ".")
    dockerfile = "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
    assert (ROOT / context / dockerfile).is_file()
    assert images.pop(), "the forecast services need an image name, so one build serves all"


def test_db_is_postgres_with_a_health_check_and_a_named_volume() -> None:
    db = SERVICES["db"]
    assert str(db["image"]).startswith("postgres:16")
    assert "pg_isready" in db["healthcheck"]["test"]
    mounts = {v.split(":")[1]: v.split(":")[0] for v in db["volumes"]}
    assert mounts.get("/var/lib/postgresql/data") in COMPOSE["volumes"]


def test_start_order_db_then_init_then_api_and_scheduler() -> None:
    assert _condition("init", "db") == "service_healthy"
    assert str(SERVICES["init"].get("restart")) == "no"
    for s in LONG_RUNNING:
        assert _condition(s, "init") == "service_completed_successfully", s
        assert SERVICES[s].get("restart") == "unless-stopped", s


def test_long_running_services_have_health_checks_with_start_periods() -> None:
    for s in LONG_RUNNING:
        hc = SERVICES[s]["healthcheck"]
        assert not hc.get("disable"), s
        for key in ("interval", "timeout", "retries", "start_period"):
            assert key in hc, f"{s}: healthcheck without {key}"
        assert _seconds(hc["timeout"]) < _seconds(hc["interval"]), s
    assert SERVICES["db"]["healthcheck"].get("start_period")


def test_api_health_check_asks_the_port_it_listens_on() -> None:
    api = SERVICES["api"]
    port = api["environment"]["FORECAST_HTTP_PORT"]
    assert f"127.0.0.1:{port}/health" in " ".join(_healthcheck_argv("api"))
    assert api["ports"] == [f"${{FORECAST_HTTP_PORT:-8000}}:{port}"]


def test_scheduler_health_check_is_forecast_ready_and_waits_for_the_first_tick() -> None:
    assert _healthcheck_argv("scheduler") == ["forecast", "ready"]
    hc = SERVICES["scheduler"]["healthcheck"]
    # ticks at :20 and :50: the first may be 30 min after the start, plus its own run time
    assert _seconds(hc["start_period"]) > 30 * 60
    # compose's default of 10 s would kill a tick in the middle
    assert _seconds(SERVICES["scheduler"]["stop_grace_period"]) >= 60
    # `docker compose up --scale scheduler=2` needs no fixed name and no host port
    assert "container_name" not in SERVICES["scheduler"]
    assert "ports" not in SERVICES["scheduler"]


def test_forecast_services_share_one_data_volume_holding_models_and_replay() -> None:
    for s in FORECAST_SERVICES:
        svc = SERVICES[s]
        env = svc["environment"]
        data_dir = PurePosixPath(env["FORECAST_DATA_DIR"])
        mounts = {PurePosixPath(v.split(":")[1]): v.split(":")[0] for v in svc["volumes"]}
        assert mounts.get(data_dir) == "forecast-data", s
        assert "forecast-data" in COMPOSE["volumes"]
        for key in ("FORECAST_MODELS_DIR", "FORECAST_REPLAY"):
            path = PurePosixPath(_interpolate(env[key]))
            assert data_dir in path.parents, f"{s}: {key}={path} is not on the data volume"
        assert "user" not in svc, f"{s}: runs as the image's non-root user"


def test_database_password_comes_from_the_environment_with_the_demo_default() -> None:
    expr = "${POSTGRES_PASSWORD:-forecast}"
    assert SERVICES["db"]["environment"]["POSTGRES_PASSWORD"] == expr
    user = SERVICES["db"]["environment"]["POSTGRES_USER"]
    db = SERVICES["db"]["environment"]["POSTGRES_DB"]
    for s in FORECAST_SERVICES:
        url = SERVICES[s]["environment"]["FORECAST_DATABASE_URL"]
        assert url == f"postgresql+psycopg://{user}:{expr}@db:5432/{db}", s


@pytest.mark.parametrize("service", FORECAST_SERVICES)
def test_service_environment_is_valid_settings(service: str) -> None:
    """Every FORECAST_* variable of the service is a setting the code knows, with a valid value
    (load_settings refuses unknown ones)."""
    env = {k: _interpolate(str(v)) for k, v in SERVICES[service]["environment"].items()}
    settings = load_settings(env)
    assert settings.db_url.startswith("postgresql+psycopg://")


@pytest.mark.parametrize(("where", "argv"), _forecast_commands(),
                         ids=lambda x: x if isinstance(x, str) else " ".join(x))
def test_every_forecast_command_parses_with_the_real_cli(
        where: str, argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert argv[0] == "forecast", where
    try:
        args = build_parser().parse_args(argv[1:])
    except SystemExit as exc:
        code = exc.code
    else:
        assert callable(args.func), where
        return
    pytest.fail(f"{where}: `{' '.join(argv)}` does not parse (exit {code}): "
                f"{capsys.readouterr().err.strip()}")


def test_compose_runs_the_commands_of_the_deployment() -> None:
    assert SERVICES["init"]["command"] == ["forecast", "demo", "--no-serve"]
    assert SERVICES["api"]["command"] == ["forecast", "serve", "--no-scheduler"]
    assert SERVICES["scheduler"]["command"] == ["forecast", "scheduler"]


def test_dockerfile_is_multi_stage_non_root_with_a_health_check_and_the_all_in_one_cmd() -> None:
    froms = [rest for kw, rest in DOCKERFILE if kw == "FROM"]
    assert len(froms) >= 2, "multi-stage build expected"
    runtime_start = max(i for i, (kw, _) in enumerate(DOCKERFILE) if kw == "FROM")
    users = [rest for kw, rest in DOCKERFILE[runtime_start:] if kw == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}, users
    checks = [rest for kw, rest in DOCKERFILE if kw == "HEALTHCHECK"]
    assert len(checks) == 1 and "--start-period=" in checks[0] and "/health" in checks[0]
    assert _dockerfile_cmd() == ["forecast", "demo"]


def test_dockerignore_keeps_the_build_context_small() -> None:
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for pattern in (".git", ".venv", "var", "mutants", "models/*", ".mypy_cache",
                    ".pytest_cache", ".ruff_cache"):
        assert pattern in ignored, pattern
    # what the Dockerfile copies must stay in the context
    copied = {"pyproject.toml", "README.md", "forecast", "config"}
    assert not copied & ignored, copied & ignored
