"""Deployment files, checked offline: docker/, docker/ecs/ and .github/workflows/.

No Docker engine and no AWS account here, so each file is checked with what validates it
without one:

- the Dockerfile: its build stage is replayed (COPY and RUN, same commands) into a local
  virtual environment; its ENTRYPOINT and HEALTHCHECK run outside Docker with the image's
  environment against a real server, from that environment and from the project's;
- docker/compose.yaml: the Compose specification's schema, and the same health check;
- docker/ecs/task-definition.json: rendered by render.py, validated against botocore's own
  model of ecs:RegisterTaskDefinition and registered in moto;
- docker/ecs/cloudformation.yaml: cfn-lint, and what this service needs from it;
- .github/workflows/*.yml: the GitHub workflow schema (check-jsonschema), and the steps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ekyc.server.config import load_config
from conftest import packaged_face_path

ROOT = Path(__file__).resolve().parent.parent
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
COMPOSE = DOCKER / "compose.yaml"
TASK_DEFINITION = DOCKER / "ecs" / "task-definition.json"
TEMPLATE = DOCKER / "ecs" / "cloudformation.yaml"
RENDER = DOCKER / "ecs" / "render.py"
WORKFLOWS = ROOT / ".github" / "workflows"
BIN = Path(sys.executable).parent
GRPC_PORT, HTTP_PORT = 50051, 8080
REGION = "eu-west-1"
ACCOUNT = "123456789012"
VALUES = {
    "TASK_FAMILY": "ekyc-ekyc-server",
    "EXECUTION_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/ekyc-TaskExecutionRole-ABC",
    "TASK_ROLE_ARN": f"arn:aws:iam::{ACCOUNT}:role/ekyc-TaskRole-DEF",
    "IMAGE": f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ekyc-server:0123456789abcdef0123456789abcdef01234567",
    "MODEL_PATH": "s3://ekyc-models/models/liveness-v2.onnx",
    "AWS_REGION": REGION,
    "API_KEYS_SECRET_ARN": f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:ApiKeysSecret-AbCdEf",
    "LOG_GROUP": "/ecs/ekyc/ekyc-server",
}
# Env names in the task definition that are not config keys: read by the S3 model store,
# the API-key loader and boto3. EKYC_SERVER_METRICS becomes the config key [server] metrics.
NOT_CONFIG_KEYS = {"EKYC_MODEL_CACHE", "EKYC_API_KEYS", "AWS_REGION", "EKYC_SERVER_METRICS"}
# Shared libraries python:3.11-slim-bookworm provides, and those of the packages the Dockerfile adds.
BASE_LIBRARIES = {
    "ld-linux-x86-64.so.2", "libc.so.6", "libm.so.6", "libdl.so.2", "libpthread.so.0", "librt.so.1",
    "libgcc_s.so.1", "libstdc++.so.6", "libz.so.1", "libutil.so.1", "libcrypt.so.1", "libexpat.so.1",
    "libffi.so.8", "libssl.so.3", "libcrypto.so.3", "libbz2.so.1.0", "liblzma.so.5", "libsqlite3.so.0",
}
APT_LIBRARIES = {"libegl1": {"libEGL.so.1"}, "libgles2": {"libGLESv2.so.2"}}
COMPILERS = {"gcc", "g++", "clang", "build-essential", "make", "cmake", "cython", "python3-dev", "libc6-dev"}
HEAVY = {"torch", "torchvision", "opencv-python", "opencv-contrib-python", "grpcio-tools", "pytest", "onnx"}


# ------------------------------------------------------------------------------ helpers


class Instruction:
    def __init__(self, stage: str, keyword: str, text: str):
        self.stage, self.keyword, self.text = stage, keyword, text

    def __repr__(self) -> str:
        return f"{self.stage}: {self.keyword} {self.text}"


def parse_dockerfile(path: Path = DOCKERFILE) -> list[Instruction]:
    """Instructions with their stage name, line continuations joined, comments dropped."""
    logical, current = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if current and line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1].strip() + " "
            continue
        logical.append((current + line).strip())
        current = ""
    instructions, stage = [], ""
    for line in logical:
        keyword, _, text = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            words = text.split()
            stage = words[2] if len(words) >= 3 and words[1].upper() == "AS" else words[0]
        instructions.append(Instruction(stage, keyword, text.strip()))
    return instructions


def stage_instructions(name: str) -> list[Instruction]:
    return [i for i in parse_dockerfile() if i.stage == name]


def final_stage() -> str:
    return [i for i in parse_dockerfile() if i.keyword == "FROM"][-1].stage


def env_of(instructions: list[Instruction]) -> dict[str, str]:
    env: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ENV":
            for item in shlex.split(instruction.text):
                key, _, value = item.partition("=")
                env[key] = value
    return env


def exec_form(text: str) -> list[str]:
    return json.loads(text) if text.startswith("[") else ["/bin/sh", "-c", text]


def last(keyword: str, stage: str | None = None) -> Instruction:
    stage = stage or final_stage()
    return [i for i in parse_dockerfile() if i.stage == stage and i.keyword == keyword][-1]


def healthcheck() -> tuple[dict[str, str], str]:
    """The HEALTHCHECK's options and its shell command."""
    text = last("HEALTHCHECK").text
    options, _, command = text.partition(" CMD ")
    parsed = dict(option.lstrip("-").split("=", 1) for option in options.split())
    assert not command.startswith("["), "the health check is a shell command (it expands EKYC_SERVER_PORT)"
    return parsed, command.strip()


def seconds(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m)", text)
    assert match, text
    return float(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60}[match.group(2)]


def dockerignore_rules() -> list[tuple[bool, re.Pattern]]:
    """(.dockerignore) rules as (excluding, regex); the last matching rule wins."""
    rules = []
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        negate = line.startswith("!")
        pattern = line[1:] if negate else line
        pattern = pattern.strip("/")
        regex = ""
        index = 0
        while index < len(pattern):
            if pattern.startswith("**/", index):
                regex += "(?:.*/)?"
                index += 3
            elif pattern.startswith("**", index):
                regex += ".*"
                index += 2
            elif pattern[index] == "*":
                regex += "[^/]*"
                index += 1
            elif pattern[index] == "?":
                regex += "[^/]"
                index += 1
            else:
                regex += re.escape(pattern[index])
                index += 1
        rules.append((not negate, re.compile(f"^{regex}(?:/.*)?$")))
    return rules


def ignored(relative: str, rules=None) -> bool:
    excluded = False
    for excluding, regex in rules if rules is not None else dockerignore_rules():
        if regex.match(relative):
            excluded = excluding
    return excluded


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_render():
    spec = importlib.util.spec_from_file_location("ekyc_render", RENDER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def render_module():
    return load_render()


@pytest.fixture(scope="module")
def rendered(render_module) -> dict:
    return render_module.render(json.loads(TASK_DEFINITION.read_text()), VALUES)


@pytest.fixture(scope="module")
def container(rendered) -> dict:
    (definition,) = rendered["containerDefinitions"]
    return definition


@pytest.fixture(scope="module")
def cfn() -> dict:
    from cfnlint.decode import decode

    template, matches = decode(str(TEMPLATE))
    assert not matches, matches
    return template


def resources_of(template: dict, kind: str) -> dict[str, dict]:
    return {name: r for name, r in template["Resources"].items() if r["Type"] == kind}


def only(template: dict, kind: str) -> dict:
    (resource,) = resources_of(template, kind).values()
    return resource["Properties"]


# ------------------------------------------------------------------------------ the image outside Docker


def image_environment(venv: Path, samples: Path, scratch: Path) -> dict[str, str]:
    """The final stage's ENV with its paths mapped onto this machine (the same variables)."""
    mapping = {
        "/opt/ekyc/venv": str(venv),
        "/opt/ekyc/models": str(ROOT / "models"),
        "/opt/ekyc/samples": str(samples),
        "/var/cache/ekyc": str(scratch / "cache"),
        "/tmp": str(scratch / "tmp"),
    }
    (scratch / "cache").mkdir(exist_ok=True)
    (scratch / "tmp").mkdir(exist_ok=True)
    # One pass, whole path components only: a mapped path may itself lie under /tmp.
    pattern = re.compile(r"(?<![^:=])(%s)(?=/|:|$)" % "|".join(re.escape(p) for p in sorted(mapping, key=len, reverse=True)))
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EKYC_", "AWS_"))}
    for key, value in env_of(stage_instructions(final_stage())).items():
        value = pattern.sub(lambda match: mapping[match.group(1)], value)
        env[key] = value.replace("$PATH", os.environ["PATH"])
    return env


def sample_path(samples: Path) -> str:
    """compose.yaml's verify command names /opt/ekyc/samples/<file>: that file here."""
    compose = yaml.safe_load(COMPOSE.read_text())
    image_sample = compose["services"]["verify"]["command"][-1]
    assert image_sample.startswith("/opt/ekyc/samples/")
    return str(samples / Path(image_sample).name)


def run_image(venv: Path, samples: Path, scratch: Path) -> None:
    """ENTRYPOINT + CMD with the image's environment (and an API key, as the task sets one),
    the HEALTHCHECK command before and after SERVING, compose's one-shot verify, SIGTERM."""
    env = image_environment(venv, samples, scratch)
    port, http_port = free_port(), free_port()
    env.update(EKYC_SERVER_PORT=str(port), EKYC_SERVER_HTTP_PORT=str(http_port), EKYC_SERVER_HOST="127.0.0.1",
               EKYC_API_KEYS="deploy-test-key")
    entrypoint = json.loads(last("ENTRYPOINT").text) + json.loads(last("CMD").text)
    executable = shutil.which(entrypoint[0], path=env["PATH"])
    assert executable and Path(executable).parent == venv / "bin", executable
    _, health_command = healthcheck()

    def health() -> subprocess.CompletedProcess:
        return subprocess.run(["/bin/sh", "-c", health_command], env=env, capture_output=True, text=True, timeout=30)

    assert health().returncode == 1, "the health check passes with no server"
    server = subprocess.Popen(
        [executable, *entrypoint[1:]], env=env, cwd=scratch, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        events = []
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and "serving" not in events:
            ready, _, _ = select.select([server.stdout], [], [], 0.5)
            if ready:
                line = server.stdout.readline()
                if not line:
                    break
                entry = json.loads(line)
                events.append(entry["event"])
                if entry["event"] == "serving":
                    model_version = entry["model_version"]
            elif server.poll() is not None:
                break
        assert "serving" in events, f"server did not start: {events} {server.stderr.read() if server.poll() is not None else ''}"
        assert model_version == json.loads((ROOT / "models" / "liveness.json").read_text())["version"]

        result = health()
        assert result.returncode == 0 and result.stdout.strip() == "SERVING", (result.stdout, result.stderr)

        client = shutil.which("ekyc-client", path=env["PATH"])
        verify = [client, "--server", f"127.0.0.1:{port}", "verify", sample_path(samples)]
        answered = subprocess.run(verify, env={**env, "EKYC_API_KEY": "deploy-test-key"},
                                  capture_output=True, text=True, timeout=60)
        assert answered.returncode in (0, 2, 3), answered.stderr  # live, spoof or quality: an answer
        refused = subprocess.run(verify, env=env, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 1 and "UNAUTHENTICATED" in refused.stderr

        # The HTTP port (EXPOSEd beside gRPC's): the ALB's health check, the demo page, the API.
        import requests

        base = f"http://127.0.0.1:{http_port}"
        assert requests.get(f"{base}/healthz", timeout=30).json() == {"status": "SERVING"}
        page = requests.get(f"{base}/", timeout=30)
        assert page.status_code == 200 and "/static/app.js" in page.text
        answer = requests.post(f"{base}/v1/liveness:verify", data=Path(sample_path(samples)).read_bytes(),
                               headers={"Content-Type": "image/jpeg", "Authorization": "Bearer deploy-test-key"},
                               timeout=60)
        assert answer.status_code == 200 and answer.json()["modelVersion"] == model_version

        started = time.monotonic()
        server.send_signal(signal.SIGTERM)
        out, _ = server.communicate(timeout=60)
        stop_timeout = json.loads(TASK_DEFINITION.read_text())["containerDefinitions"][0]["stopTimeout"]
        assert server.returncode == 0
        assert time.monotonic() - started < stop_timeout
        assert json.loads(out.splitlines()[-1])["event"] == "stopped"
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=10)
        server.stdout.close()
        server.stderr.close()


def test_image_entrypoint_and_healthcheck_work_outside_docker(tmp_path):
    """With this project's environment: quick, and independent of the image's install."""
    samples = tmp_path / "samples"
    samples.mkdir()
    shutil.copy(packaged_face_path(), samples / "grace_hopper.jpg")
    run_image(BIN.parent, samples, tmp_path)


def docker_copy(sources: list[str], dest: Path, is_dir: bool, rules) -> None:
    for source in sources:
        path = ROOT / source
        assert path.exists(), f"COPY {source}: not in the build context"
        assert not ignored(source.rstrip("/"), rules), f"COPY {source}: excluded by .dockerignore"
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                relative = item.relative_to(ROOT).as_posix()
                if item.is_file() and not ignored(relative, rules):
                    target = dest / item.relative_to(path)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(item, target)
        else:
            target = dest / path.name if is_dir else dest
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)


@pytest.fixture(scope="module")
def image_venv(tmp_path_factory) -> Path:
    """The build stage replayed: its ENV, WORKDIR, COPY and RUN lines, the same shell commands,
    with the image's paths (VENV, BUILD_VENV, WHEELS, EKYC_HOME, WORKDIR) in a temporary folder."""
    root = tmp_path_factory.mktemp("image")
    (root / "bin").mkdir()
    (root / "bin" / "python").symlink_to(sys.executable)
    rules = dockerignore_rules()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("EKYC_", "VIRTUAL_ENV"))}
    env["PATH"] = f"{root / 'bin'}:{os.environ['PATH']}"
    workdir = root / "src"
    paths = {"VENV": root / "opt/ekyc/venv", "BUILD_VENV": root / "opt/build", "WHEELS": root / "wheels",
             "EKYC_HOME": root / "opt/ekyc"}
    ran = []
    for instruction in stage_instructions("build"):
        if instruction.keyword == "ENV":
            env.update(env_of([instruction]))
            env.update({key: str(value) for key, value in paths.items()})
            # The image has no use for pip's cache; here it saves downloading the lock on every run.
            env.pop("PIP_NO_CACHE_DIR", None)
        elif instruction.keyword == "WORKDIR":
            assert instruction.text == "/src"
            workdir.mkdir(exist_ok=True)
        elif instruction.keyword == "COPY":
            *sources, dest = shlex.split(instruction.text)
            assert not any(s.startswith("--") for s in sources), instruction
            docker_copy(sources, workdir / dest, dest.endswith("/") or len(sources) > 1, rules)
        elif instruction.keyword == "RUN":
            assert "/opt/" not in instruction.text, f"use the path variables: {instruction}"
            result = subprocess.run(["/bin/sh", "-c", instruction.text], cwd=workdir, env=env,
                                    capture_output=True, text=True, timeout=600)
            assert result.returncode == 0, f"{instruction}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            ran.append(instruction.text)
    assert any("--no-deps -r requirements/server.txt" in command for command in ran)
    return paths["VENV"]


def installed(venv: Path) -> dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
                         capture_output=True, text=True, check=True).stdout
    return {item["name"].lower().replace("_", "-"): item["version"] for item in json.loads(out)}


def lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements" / "server.txt").read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[name.lower().replace("_", "-")] = version
    return pins


@pytest.mark.slow
def test_image_install_is_exactly_the_lock_and_serves(image_venv, tmp_path):
    packages = installed(image_venv)
    assert {name: packages.get(name) for name in lock()} == lock()
    extra = set(packages) - set(lock()) - {"ekyc", "pip", "setuptools"}
    assert not extra, f"not in requirements/server.txt: {extra}"
    assert not HEAVY & set(packages)
    assert not list((image_venv / "bin").glob("*gcc*"))
    # The wheel (not the sources) is what runs, and it finds its own data files.
    code = "import ekyc.server.app, ekyc.server.config as c; c.load_config(); print(c.__file__)"
    where = subprocess.run([str(image_venv / "bin" / "python"), "-c", code], capture_output=True, text=True,
                           cwd=tmp_path, env={k: v for k, v in os.environ.items() if not k.startswith("EKYC_")})
    assert where.returncode == 0, where.stderr
    assert str(image_venv) in where.stdout
    run_image(image_venv, image_venv.parent / "samples", tmp_path)


@pytest.mark.slow
def test_image_shared_libraries_come_from_the_base_or_its_apt_packages(image_venv):
    readelf = shutil.which("readelf")
    if readelf is None:
        pytest.skip("readelf (binutils) is not installed")
    apt = set()
    for instruction in stage_instructions(final_stage()):
        if instruction.keyword == "RUN" and "apt-get install" in instruction.text:
            words = instruction.text.split("apt-get install", 1)[1].split("&&")[0].split()
            apt |= {w for w in words if not w.startswith("-")}
    assert apt <= set(APT_LIBRARIES), f"add the libraries of {apt - set(APT_LIBRARIES)} to APT_LIBRARIES"
    assert not apt & COMPILERS
    provided = BASE_LIBRARIES.union(*(APT_LIBRARIES[p] for p in apt))
    libraries = [p for p in (image_venv / "lib").rglob("*.so*") if p.is_file()]
    bundled = {p.name for p in libraries}
    needed: dict[str, str] = {}
    for library in libraries:
        out = subprocess.run([readelf, "-d", str(library)], capture_output=True, text=True).stdout
        for name in re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", out):
            needed.setdefault(name, library.name)
    missing = {name: by for name, by in needed.items() if name not in bundled and name not in provided}
    assert not missing, f"shared libraries the image lacks (library: needed by): {missing}"


# ------------------------------------------------------------------------------ Dockerfile and compose


def test_dockerfile_is_multi_stage_slim_non_root_with_models_port_and_health():
    froms = [i for i in parse_dockerfile() if i.keyword == "FROM"]
    assert len(froms) >= 2 and [f.stage for f in froms][:1] == ["build"]
    arg = next(i for i in parse_dockerfile() if i.keyword == "ARG" and i.text.startswith("PYTHON_IMAGE="))
    assert re.fullmatch(r"PYTHON_IMAGE=python:3\.11-slim(-\w+)?(@sha256:[0-9a-f]{64})?", arg.text)
    final = stage_instructions(final_stage())
    user = last("USER").text
    assert user.split(":")[0] not in ("0", "root")
    assert last("EXPOSE").text.split() == [str(GRPC_PORT), str(HTTP_PORT)]
    assert json.loads(last("ENTRYPOINT").text) == ["ekyc-server"]
    copies = [i.text for i in final if i.keyword == "COPY"]
    assert all(c.startswith("--from=build ") or c.startswith("models/") for c in copies), copies
    env = env_of(final)
    assert env["EKYC_MODEL_PATH"] == "/opt/ekyc/models/liveness.onnx"
    assert env["EKYC_DETECTOR_PATH"] == "/opt/ekyc/models/mediapipe/face_detector.onnx"
    assert env["EKYC_MODEL_CACHE"].startswith("/var/cache/")
    # Every model-file key of the configuration ([model] path, [detector] path, ...) points at
    # the copied models/: the installed wheel has none next to it.
    for section, keys in _config_sections().items():
        if "path" in keys:
            name = f"EKYC_{section.upper()}_PATH"
            assert name in env, f"the image does not set {name}"
            assert env[name].startswith("/opt/ekyc/models/") and (ROOT / Path(env[name]).relative_to("/opt/ekyc")).exists()
    assert not any(word in i.text.split() for i in final if i.keyword == "RUN" for word in COMPILERS)
    options, command = healthcheck()
    assert " health" in command and "ekyc-client" in command
    assert seconds(options["timeout"]) < seconds(options["interval"])


def test_dockerfile_installs_the_lock_without_dependencies():
    runs = " ".join(i.text for i in stage_instructions("build") if i.keyword == "RUN")
    assert '"$VENV/bin/pip" install --no-deps -r requirements/server.txt' in runs
    assert re.search(r'"\$VENV/bin/pip" install --no-deps "\$WHEELS"/ekyc-\*\.whl', runs)
    assert "--no-build-isolation" in runs  # the pinned backend of docker/build-requirements.txt
    for line in (DOCKER / "build-requirements.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert re.fullmatch(r"[A-Za-z0-9_.-]+==[0-9][^ ]*", line.strip()), line


def test_dockerignore_admits_what_the_image_copies_and_nothing_private():
    rules = dockerignore_rules()
    for instruction in parse_dockerfile():
        if instruction.keyword == "COPY" and not instruction.text.startswith("--from"):
            for source in shlex.split(instruction.text)[:-1]:
                assert not ignored(source.rstrip("/"), rules), source
    for private in (".git/config", ".venv/bin/python", "tests/test_deploy.py", "runs/x", "data/a.jpg",
                    "server/__pycache__/app.cpython-311.pyc", "bench/bench.py", ".github/workflows/deploy.yml"):
        assert ignored(private, rules), private
    assert not ignored("models/liveness.onnx", rules) and not ignored("server/app.py", rules)


def test_compose_file_follows_the_compose_specification():
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_publishes_the_grpc_and_http_ports():
    server = yaml.safe_load(COMPOSE.read_text())["services"]["server"]
    published = {int(port.rsplit(":", 1)[1]) for port in server["ports"]}
    assert published == {GRPC_PORT, HTTP_PORT}


def test_compose_runs_the_server_and_a_one_shot_verify_once_healthy():
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    server, verify = services["server"], services["verify"]
    assert server["build"] == {"context": "..", "dockerfile": "docker/Dockerfile"}
    assert verify["image"] == server["image"]
    assert verify["depends_on"]["server"]["condition"] == "service_healthy"
    assert verify["entrypoint"] == ["ekyc-client"] and "verify" in verify["command"]
    assert verify["restart"] == "no"
    test = server["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and test[1].replace("$$", "$") == healthcheck()[1]
    config = load_config(None, environ={})
    assert seconds(server["stop_grace_period"]) > config.server.shutdown_drain_s + config.server.shutdown_grace_s
    assert "/var/cache/ekyc" in " ".join(server["volumes"]) and server["read_only"] is True


# ------------------------------------------------------------------------------ ECS task definition


def test_task_definition_renders_and_matches_botocores_register_task_definition(rendered):
    import botocore.session
    from botocore.validate import validate_parameters

    client = botocore.session.get_session().create_client("ecs", region_name=REGION)
    model = client.meta.service_model.operation_model("RegisterTaskDefinition")
    validate_parameters(rendered, model.input_shape)  # raises ParamValidationError on any mistake
    assert "${" not in json.dumps(rendered).replace("${EKYC_SERVER_PORT:-50051}", "")


def test_task_definition_registers_in_moto(rendered, monkeypatch):
    import boto3
    from moto import mock_aws

    for key, value in {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                       "AWS_SESSION_TOKEN": "testing", "AWS_DEFAULT_REGION": REGION}.items():
        monkeypatch.setenv(key, value)
    with mock_aws():
        ecs = boto3.client("ecs", region_name=REGION)
        registered = ecs.register_task_definition(**rendered)["taskDefinition"]
        assert registered["family"] == VALUES["TASK_FAMILY"] and registered["revision"] == 1
        described = ecs.describe_task_definition(taskDefinition=VALUES["TASK_FAMILY"])["taskDefinition"]
        (definition,) = described["containerDefinitions"]
        assert definition["image"] == VALUES["IMAGE"]
        assert definition["logConfiguration"] == rendered["containerDefinitions"][0]["logConfiguration"]
        assert definition["healthCheck"] == rendered["containerDefinitions"][0]["healthCheck"]


def test_task_definition_is_ec2_sized_for_a_2_vcpu_2_gib_instance(rendered):
    assert rendered["requiresCompatibilities"] == ["EC2"]
    assert rendered["networkMode"] == "awsvpc"
    assert int(rendered["cpu"]) == 2048
    assert 1024 <= int(rendered["memory"]) <= 2048 - 256  # the agent reserves 256 MiB (launch template)


def test_task_definition_logs_with_awslogs_non_blocking(container):
    log = container["logConfiguration"]
    assert log["logDriver"] == "awslogs"
    options = log["options"]
    assert options["awslogs-group"] == VALUES["LOG_GROUP"] and options["awslogs-region"] == REGION
    assert options["awslogs-stream-prefix"] and options["mode"] == "non-blocking"
    assert options["max-buffer-size"].endswith("m")


def test_task_definition_health_check_is_the_images(container):
    check = container["healthCheck"]
    options, command = healthcheck()
    assert check["command"] == ["CMD-SHELL", command]
    assert check["interval"] == seconds(options["interval"]) and check["timeout"] == seconds(options["timeout"])
    assert check["retries"] == int(options["retries"]) and check["startPeriod"] == seconds(options["start-period"])


def test_task_definition_stop_timeout_exceeds_the_servers_shutdown(container):
    env = {item["name"]: item["value"] for item in container["environment"]}
    config = load_config(None, environ=env)
    needed = config.server.shutdown_drain_s + config.server.shutdown_grace_s
    assert container["stopTimeout"] >= needed + 5, (container["stopTimeout"], needed)
    assert container["stopTimeout"] <= 120  # the most Fargate allows: keep the task portable


def test_task_definition_port_user_secrets_and_environment(container):
    assert container["name"] == "ekyc-server" and container["essential"] is True
    assert container["portMappings"] == [
        {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "tcp", "appProtocol": "grpc"},
        {"name": "http", "containerPort": HTTP_PORT, "protocol": "tcp", "appProtocol": "http"},
    ]
    assert container["user"] == last("USER").text
    assert container["secrets"] == [{"name": "EKYC_API_KEYS", "valueFrom": VALUES["API_KEYS_SECRET_ARN"]}]
    env = {item["name"]: item["value"] for item in container["environment"]}
    assert env["EKYC_MODEL_PATH"] == VALUES["MODEL_PATH"]
    assert not {"EKYC_API_KEYS", "EKYC_API_KEY", "AWS_SECRET_ACCESS_KEY"} & set(env), "secrets belong in secrets"
    config_keys = {f"EKYC_{section}_{key}".upper() for section, keys in _config_sections().items() for key in keys}
    unknown = {name for name in env if name not in config_keys and name not in NOT_CONFIG_KEYS}
    assert not unknown, f"not configuration keys: {unknown}"
    load_config(None, environ=env)  # every value parses


def _config_sections() -> dict:
    import tomllib

    from ekyc.server.config import DEFAULTS_FILE, QUALITY_DEFAULTS_FILE

    sections = tomllib.loads(DEFAULTS_FILE.read_text())
    sections.update(tomllib.loads(QUALITY_DEFAULTS_FILE.read_text()))
    return sections


def test_task_definition_root_is_read_only_with_writable_tmp_and_model_cache(rendered, container):
    assert container["readonlyRootFilesystem"] is True
    mounts = {m["containerPath"]: m["sourceVolume"] for m in container["mountPoints"]}
    env = {item["name"]: item["value"] for item in container["environment"]}
    assert set(mounts) == {"/tmp", env["EKYC_MODEL_CACHE"]}
    assert env["EKYC_MODEL_CACHE"] == env_of(stage_instructions(final_stage()))["EKYC_MODEL_CACHE"]
    volumes = {v["name"]: v for v in rendered["volumes"]}
    assert set(mounts.values()) == set(volumes)
    assert all(v["dockerVolumeConfiguration"]["scope"] == "task" for v in volumes.values())
    assert container["linuxParameters"]["initProcessEnabled"] is True
    assert container["linuxParameters"]["capabilities"]["drop"] == ["ALL"]


# ------------------------------------------------------------------------------ render.py


def test_render_refuses_leftover_placeholders_and_writes_nothing(tmp_path):
    out = tmp_path / "td.json"
    env = {k: v for k, v in os.environ.items() if k not in VALUES}
    args = [sys.executable, str(RENDER), "--out", str(out)] + [f"--set={k}={v}" for k, v in VALUES.items() if k != "IMAGE"]
    result = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "${IMAGE}" in result.stderr and not out.exists()
    result = subprocess.run(args + [f"--set=IMAGE={VALUES['IMAGE']}"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["containerDefinitions"][0]["image"] == VALUES["IMAGE"]


def test_render_keeps_shell_expansions_and_rejects_invalid_results(render_module, tmp_path):
    assert render_module.placeholders("${EKYC_SERVER_PORT:-50051} ${IMAGE} $HOME") == {"IMAGE"}
    bad = json.loads(TASK_DEFINITION.read_text())
    bad["containerDefinitions"][0]["stopTimeout"] = "thirty"
    template = tmp_path / "bad.json"
    template.write_text(json.dumps(bad))
    args = ["--template", str(template), "--out", str(tmp_path / "out.json")] + [f"--set={k}={v}" for k, v in VALUES.items()]
    assert render_module.main(args) == 2 and not (tmp_path / "out.json").exists()


def test_render_takes_values_from_stack_outputs_then_env_then_flags(render_module, tmp_path, monkeypatch):
    """--stack reads DescribeStacks through boto3 (answered by botocore's Stubber, which also
    checks the request and the response against the CloudFormation model)."""
    import boto3
    from botocore.stub import Stubber

    outputs = {"TaskFamily": VALUES["TASK_FAMILY"], "TaskRoleArn": VALUES["TASK_ROLE_ARN"],
               "ExecutionRoleArn": VALUES["EXECUTION_ROLE_ARN"], "ApiKeysSecretArn": VALUES["API_KEYS_SECRET_ARN"],
               "LogGroup": VALUES["LOG_GROUP"], "ModelPath": "/opt/ekyc/models/liveness.onnx", "AwsRegion": "us-east-2"}
    client = boto3.client("cloudformation", region_name=REGION, aws_access_key_id="testing",
                          aws_secret_access_key="testing")
    stubber = Stubber(client)
    stubber.add_response(
        "describe_stacks",
        {"Stacks": [{"StackName": "ekyc", "CreationTime": "2026-01-01T00:00:00Z", "StackStatus": "UPDATE_COMPLETE",
                     "Outputs": [{"OutputKey": k, "OutputValue": v} for k, v in outputs.items()]}]},
        {"StackName": "ekyc"},
    )
    monkeypatch.setattr(boto3, "client", lambda service, region_name=None: client)
    monkeypatch.setenv("AWS_REGION", REGION)  # env beats the stack's AwsRegion
    monkeypatch.delenv("IMAGE", raising=False)
    out = tmp_path / "td.json"
    with stubber:
        code = render_module.main(["--stack", "ekyc", "--region", REGION, "--set", f"IMAGE={VALUES['IMAGE']}",
                                   "--set", "MODEL_PATH=s3://b/models/x.onnx", "--out", str(out)])
        stubber.assert_no_pending_responses()
    assert code == 0
    result = json.loads(out.read_text())
    (definition,) = result["containerDefinitions"]
    env = {item["name"]: item["value"] for item in definition["environment"]}
    assert result["taskRoleArn"] == VALUES["TASK_ROLE_ARN"] and result["family"] == VALUES["TASK_FAMILY"]
    assert env["AWS_REGION"] == REGION and definition["logConfiguration"]["options"]["awslogs-region"] == REGION
    assert env["EKYC_MODEL_PATH"] == "s3://b/models/x.onnx"  # --set beats the stack output


def test_stack_outputs_cover_every_placeholder_but_the_image(render_module, cfn):
    names = render_module.placeholders(json.loads(TASK_DEFINITION.read_text()))
    outputs = {render_module.output_name(key) for key, output in cfn["Outputs"].items() if "Condition" not in output}
    assert names - outputs == {"IMAGE"}


# ------------------------------------------------------------------------------ CloudFormation


def test_cloudformation_template_passes_cfn_lint():
    result = subprocess.run([str(BIN / "cfn-lint"), "--include-checks", "I", "--", str(TEMPLATE)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def target_groups(cfn) -> dict[str, dict]:
    """The target groups by protocol version: GRPC and HTTP1."""
    groups = {r["Properties"]["ProtocolVersion"]: (name, r["Properties"])
              for name, r in resources_of(cfn, "AWS::ElasticLoadBalancingV2::TargetGroup").items()}
    assert set(groups) == {"GRPC", "HTTP1"}
    return groups


def listener_of(cfn, group_name: str) -> dict:
    (listener,) = [r["Properties"] for r in resources_of(cfn, "AWS::ElasticLoadBalancingV2::Listener").values()
                   if r["Properties"]["DefaultActions"] == [{"Type": "forward", "TargetGroupArn": {"Ref": group_name}}]]
    return listener


def test_grpc_target_group_checks_grpc_health(cfn):
    name, group = target_groups(cfn)["GRPC"]
    assert group["Port"] == GRPC_PORT
    assert group["TargetType"] == "ip"  # awsvpc tasks register by IP
    assert group["HealthCheckPath"] == "/grpc.health.v1.Health/Check"
    assert group["Matcher"] == {"GrpcCode": "0"}
    listener = listener_of(cfn, name)
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == 443  # gRPC on an ALB needs HTTPS
    assert only(cfn, "AWS::ElasticLoadBalancingV2::LoadBalancer")["Type"] == "application"


def test_http_target_group_checks_healthz_behind_its_own_https_listener(cfn, container):
    name, group = target_groups(cfn)["HTTP1"]
    http_mapping = next(m for m in container["portMappings"] if m["name"] == "http")
    assert group["Protocol"] == "HTTP" and group["Port"] == http_mapping["containerPort"] == HTTP_PORT
    assert group["TargetType"] == "ip"
    assert group["HealthCheckPath"] == "/healthz" and group["Matcher"] == {"HttpCode": "200"}
    listener = listener_of(cfn, name)
    assert listener["Protocol"] == "HTTPS" and listener["Port"] == {"Ref": "HttpApiPort"}
    assert listener["Certificates"] == [{"CertificateArn": {"Ref": "CertificateArn"}}]
    assert cfn["Parameters"]["HttpApiPort"]["Default"] != 443
    groups = resources_of(cfn, "AWS::EC2::SecurityGroup")
    public = groups["LoadBalancerSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert {"IpProtocol": "tcp", "FromPort": {"Ref": "HttpApiPort"}, "ToPort": {"Ref": "HttpApiPort"},
            "CidrIp": {"Ref": "AllowedCidr"}} in public
    tasks = groups["TaskSecurityGroup"]["Properties"]["SecurityGroupIngress"]
    assert {"IpProtocol": "tcp", "FromPort": HTTP_PORT, "ToPort": HTTP_PORT,
            "SourceSecurityGroupId": {"Ref": "LoadBalancerSecurityGroup"}} in tasks
    alarms = [r["Properties"] for r in resources_of(cfn, "AWS::CloudWatch::Alarm").values()]
    assert any({"Name": "TargetGroup", "Value": {"Fn::GetAtt": [name, "TargetGroupFullName"]}} in a.get("Dimensions", [])
               for a in alarms)


def test_service_runs_on_an_ec2_capacity_provider_behind_the_load_balancer(cfn, container):
    service = only(cfn, "AWS::ECS::Service")
    assert "LaunchType" not in service
    assert service["CapacityProviderStrategy"][0]["CapacityProvider"] == {"Ref": "CapacityProvider"}
    balancers = {b["TargetGroupArn"]["Ref"]: b for b in service["LoadBalancers"]}
    groups = target_groups(cfn)
    assert set(balancers) == {groups["GRPC"][0], groups["HTTP1"][0]}
    ports = {m["name"]: m["containerPort"] for m in container["portMappings"]}
    for version, port_name in (("GRPC", "grpc"), ("HTTP1", "http")):
        balancer = balancers[groups[version][0]]
        assert balancer["ContainerName"] == container["name"]
        assert balancer["ContainerPort"] == ports[port_name] == groups[version][1]["Port"]
    (depends,) = [r["DependsOn"] for r in resources_of(cfn, "AWS::ECS::Service").values()]
    assert set(depends) >= set(resources_of(cfn, "AWS::ElasticLoadBalancingV2::Listener"))
    assert service["DeploymentConfiguration"]["DeploymentCircuitBreaker"] == {"Enable": True, "Rollback": True}
    provider = only(cfn, "AWS::ECS::CapacityProvider")["AutoScalingGroupProvider"]
    assert provider["ManagedScaling"]["Status"] == "ENABLED" and provider["ManagedTerminationProtection"] == "ENABLED"
    assert only(cfn, "AWS::AutoScaling::AutoScalingGroup")["NewInstancesProtectedFromScaleIn"] is True
    default_type = cfn["Parameters"]["InstanceType"]["Default"]
    assert default_type == "t3.small"  # 2 vCPU, 2 GiB: the size the task definition is cut for


def test_service_scales_on_images_per_task_with_a_cpu_backstop(cfn):
    policies = {name: r["Properties"] for name, r in resources_of(cfn, "AWS::ApplicationAutoScaling::ScalingPolicy").items()}
    assert set(policies) == {"ImagesScalingPolicy", "CpuScalingPolicy"}
    target = only(cfn, "AWS::ApplicationAutoScaling::ScalableTarget")
    assert target["ScalableDimension"] == "ecs:service:DesiredCount" and target["ServiceNamespace"] == "ecs"
    for policy in policies.values():
        assert policy["PolicyType"] == "TargetTrackingScaling" and policy["ScalingTargetId"] == {"Ref": "ScalableTarget"}
    cpu = policies["CpuScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]
    assert cpu["PredefinedMetricSpecification"]["PredefinedMetricType"] == "ECSServiceAverageCPUUtilization"
    config = policies["ImagesScalingPolicy"]["TargetTrackingScalingPolicyConfiguration"]
    assert config["TargetValue"] == {"Ref": "TargetImagesPerTask"}
    queries = {q["Id"]: q for q in config["CustomizedMetricSpecification"]["Metrics"]}
    # Every image RPC the server counts (server/metrics.py writes Requests per method, one per
    # stream item), summed per minute, over the running tasks of this service.
    from ekyc.server import metrics

    methods = {q["MetricStat"]["Metric"]["Dimensions"][0]["Value"]: q for q in queries.values()
               if q.get("MetricStat", {}).get("Metric", {}).get("Namespace") == metrics.NAMESPACE}
    assert set(methods) == {"Verify", "VerifyStream", "CheckQuality", "CompareFaces"}
    for query in methods.values():
        assert query["MetricStat"]["Metric"]["MetricName"] == "Requests" and query["MetricStat"]["Stat"] == "Sum"
    tasks = queries["tasks"]["MetricStat"]
    assert tasks["Metric"]["Namespace"] == "ECS/ContainerInsights" and tasks["Metric"]["MetricName"] == "RunningTaskCount"
    assert {d["Name"] for d in tasks["Metric"]["Dimensions"]} == {"ClusterName", "ServiceName"}
    (returned,) = [q for q in queries.values() if q["ReturnData"]]
    for name in ("verify", "stream", "quality", "compare", "tasks", "/ 60"):
        assert name in returned["Expression"]
    # The cluster publishes RunningTaskCount only with Container Insights on.
    settings = only(cfn, "AWS::ECS::Cluster")["ClusterSettings"]
    assert {"Name": "containerInsights", "Value": "enabled"} in settings


def test_the_images_per_task_target_comes_from_the_benchmark(cfn, rendered):
    """The default keeps each task at 70 % of what one task of the shipped task definition
    holds in the committed benchmark (bench/results-2vcpu.json, 640x480, the slower of the
    unary and stream paths), on the machine size the task definition reserves."""
    results = json.loads((ROOT / "bench" / "results-2vcpu.json").read_text())
    assert results["cores"] == int(rendered["cpu"]) // 1024 == 2
    figures = results["sizes"]["640x480"]
    capacity = min(figures["unary_images_per_s"], figures["stream_images_per_s"])
    default = cfn["Parameters"]["TargetImagesPerTask"]["Default"]
    assert abs(default - 0.7 * capacity) <= 0.05 * capacity, (default, capacity)
    assert cfn["Parameters"]["TargetCpuPercent"]["Default"] > 70  # the CPU policy is the backstop, not the driver


def test_log_group_has_retention_and_deregistration_covers_shutdown(cfn):
    group = only(cfn, "AWS::Logs::LogGroup")
    assert group["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    assert cfn["Parameters"]["LogRetentionDays"]["Default"] > 0
    config = load_config(None, environ={})
    assert cfn["Parameters"]["DeregistrationDelaySeconds"]["Default"] > config.server.shutdown_grace_s


def test_roles_are_least_privilege(cfn):
    policy = only(cfn, "AWS::IAM::RolePolicy")
    assert policy["RoleName"] == {"Ref": "TaskRole"}
    statements = policy["PolicyDocument"]["Statement"]
    assert {s["Action"] for s in statements} == {"s3:GetObject", "s3:ListBucket"}
    get = next(s for s in statements if s["Action"] == "s3:GetObject")
    assert get["Resource"] == {"Fn::Sub": "arn:${AWS::Partition}:s3:::${ModelBucket}/${ModelPrefix}*"}
    task_role = cfn["Resources"]["TaskRole"]["Properties"]
    assert "Policies" not in task_role and "ManagedPolicyArns" not in task_role
    deploy = cfn["Resources"]["DeployRole"]["Properties"]
    (trust,) = deploy["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert set(trust["Condition"]["StringEquals"]) == {"token.actions.githubusercontent.com:aud",
                                                        "token.actions.githubusercontent.com:sub"}
    for statement in deploy["Policies"][0]["PolicyDocument"]["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        assert not any(a.endswith(":*") or a == "*" for a in actions), statement


# ------------------------------------------------------------------------------ workflows


def workflow(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text())
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as true
    return data


def test_workflows_follow_the_github_workflow_schema():
    files = sorted(str(p) for p in WORKFLOWS.glob("*.yml"))
    assert len(files) >= 3
    result = subprocess.run([str(BIN / "check-jsonschema"), "--builtin-schema", "vendor.github-workflows", *files],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_pull_requests_run_the_tests_and_buf_breaking_against_main():
    pr = workflow("pr.yml")
    assert "pull_request" in pr["on"]
    assert pr["jobs"]["test"]["uses"] == "./.github/workflows/test.yml"
    runs = " ".join(step.get("run", "") for step in pr["jobs"]["contract"]["steps"])
    assert "buf breaking protos --against '.git#branch=origin/main,subdir=protos'" in runs and "buf-bin" in runs
    checkout = pr["jobs"]["contract"]["steps"][0]
    assert checkout["uses"].startswith("actions/checkout@") and checkout["with"]["fetch-depth"] == 0
    test = workflow("test.yml")
    assert "workflow_call" in test["on"]
    assert any(step.get("run") == ".ci/run" for step in test["jobs"]["test"]["steps"])


def test_push_to_main_tests_builds_pushes_renders_and_deploys_with_oidc():
    deploy = workflow("deploy.yml")
    assert deploy["on"]["push"]["branches"] == ["main"]
    job = deploy["jobs"]["deploy"]
    assert job["needs"] == "test" and deploy["jobs"]["test"]["uses"] == "./.github/workflows/test.yml"
    assert job["permissions"]["id-token"] == "write"
    steps = job["steps"]
    uses = [step.get("uses", "").split("@")[0] for step in steps]
    order = ["actions/checkout", "aws-actions/configure-aws-credentials", "aws-actions/amazon-ecr-login",
             "aws-actions/amazon-ecs-deploy-task-definition"]
    assert [u for u in uses if u in order] == order
    credentials = steps[uses.index("aws-actions/configure-aws-credentials")]["with"]
    assert "role-to-assume" in credentials
    assert not {"aws-access-key-id", "aws-secret-access-key"} & set(credentials)
    runs = "\n".join(step.get("run", "") for step in steps)
    assert "docker build -f docker/Dockerfile" in runs and "docker push" in runs
    assert job["env"]["IMAGE_TAG"] == "${{ github.sha }}"
    assert "docker/ecs/render.py --stack" in runs
    deploy_step = steps[uses.index("aws-actions/amazon-ecs-deploy-task-definition")]["with"]
    assert deploy_step["wait-for-service-stability"] is True
    assert deploy_step["task-definition"] == "task-definition.rendered.json"
    assert deploy["concurrency"]["cancel-in-progress"] is False
    text = "\n".join(p.read_text() for p in WORKFLOWS.glob("*.yml"))
    assert "AWS_SECRET_ACCESS_KEY" not in text and "secrets.AWS" not in text
