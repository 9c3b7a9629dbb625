"""The code's shape: no import cycle, small runtime modules, and a code map that matches the tree."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The public faces at the top, and the package that ships behind them.
FACES = ("lambda_function.py", "durable_function.py", "AWSSession.py", "Notification.py")
SHIPPED = "recycler"
# Runtime modules stay readable; the engine's orchestration is split off long before this.
MAX_MODULE_LINES = 400


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_modules() -> dict[str, Path]:
    paths = [ROOT / face for face in FACES] + sorted((ROOT / SHIPPED).rglob("*.py"))
    return {_module_name(p): p for p in paths}


def _imports(path: Path, known: set[str]) -> set[str]:
    """Every local module this file imports, anywhere in it (function bodies and TYPE_CHECKING included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            # Importing a.b.c runs a, a.b and a.b.c.
            parts = name.split(".")
            found |= {".".join(parts[:i]) for i in range(1, len(parts) + 1)} & known
    return found


def _graph() -> dict[str, set[str]]:
    modules = _runtime_modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    # GIVEN a graph with a -> b -> c -> a THEN it is reported; a DAG is not
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None


def test_runtime_modules_import_each_other_without_a_cycle() -> None:
    # GIVEN every module that ships WHEN their imports are read from the source
    graph = _graph()
    # THEN the faces and the package are all there, and no import leads back to where it started
    assert {"lambda_function", "durable_function", "AWSSession", "Notification", "recycler.run.engine"} <= set(graph)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


# The rooms by stage, lowest first: a module imports only from its own room or a lower rank, so the
# data knows nothing of AWS, the lock nothing of a run, and only the hosts know Lambda.
RANKS = {"model": 0, "observability": 0, "aws": 1, "lock": 2, "notification": 2, "run": 3, "hosts": 4}
# Each face hands over to one room and holds no logic of its own.
FACE_ROOMS = {
    "lambda_function": {"hosts"},
    "durable_function": {"hosts"},
    # The session as the environment sets it (AWS_REGION) comes from the one module that reads it.
    "AWSSession": {"aws", "hosts"},
    "Notification": {"notification"},
}


def _room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == SHIPPED and len(parts) > 1 else None


def _direction_breaks(graph: dict[str, set[str]]) -> list[str]:
    """Every import that climbs the stages (a lower room importing a higher one), and every face import
    that reaches past its room."""
    breaks = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            room, to = _room(module), _room(target)
            if module in FACE_ROOMS:
                if target != SHIPPED and to not in FACE_ROOMS[module]:
                    breaks.append(f"{module} -> {target}")
            elif target in FACE_ROOMS:
                breaks.append(f"{module} -> {target} (a face)")
            elif room is not None and to is not None and room != to and RANKS[to] > RANKS[room]:
                breaks.append(f"{module} -> {target}")
    return breaks


def test_the_direction_rule_finds_an_import_that_climbs() -> None:
    # GIVEN a model module importing a run module, and a face importing the model THEN both are reported
    graph = {
        "recycler.model.report": {"recycler.run.engine"},
        "recycler.run.engine": {"recycler.model.report"},
        "lambda_function": {"recycler.hosts.plain", "recycler.model.request"},
        "recycler.hosts.plain": {"AWSSession"},
    }
    assert _direction_breaks(graph) == [
        "lambda_function -> recycler.model.request",
        "recycler.hosts.plain -> AWSSession (a face)",
        "recycler.model.report -> recycler.run.engine",
    ]


def test_every_room_is_ranked_and_every_import_follows_the_stages() -> None:
    # GIVEN the package's rooms WHEN every import is read THEN each room has a rank, and none climbs
    rooms = {p.name for p in (ROOT / SHIPPED).iterdir() if (p / "__init__.py").exists()}
    assert rooms == set(RANKS)
    assert not [p.name for p in (ROOT / SHIPPED).glob("*.py") if p.name != "__init__.py"], "modules live in rooms"
    assert _direction_breaks(_graph()) == []


def test_nothing_that_ships_imports_development_code() -> None:
    for name, path in _runtime_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            module = node.module if isinstance(node, ast.ImportFrom) else None
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or ""]
            assert not any(n == "dev" or n.startswith(("dev.", "tests")) for n in names), f"{name} imports {names}"


def test_no_runtime_module_is_over_the_size_limit() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _runtime_modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_MODULE_LINES} == {}


def test_the_durable_sdk_is_imported_by_the_durable_runtime_only() -> None:
    importers = {
        name
        for name, path in _runtime_modules().items()
        if "aws_durable_execution_sdk_python" in path.read_text(encoding="utf-8")
    }
    # The durable host, its fleet, and how it writes its checkpoints, which only they import: the plain function
    # never loads it.
    assert importers == {"recycler.hosts.durable", "recycler.hosts.durable_fleet", "recycler.hosts.checkpoints"}
    assert {name for name, imported in _graph().items() if "recycler.hosts.checkpoints" in imported} == {
        "recycler.hosts.durable",
        "recycler.hosts.durable_fleet",
    }


# A reach into one of these clients: a call, `ecs.stop_task(`, or a method handed on, `reads.call(reads.ecs.x, ...)`.
_CLIENT_CALL = re.compile(r"\b(?:ecs|autoscaling|elbv2|cloudwatch|sts|lambda_client)\.(\w+)")


def test_every_ecs_scaling_elb_alarm_and_lambda_call_goes_through_the_aws_room() -> None:
    # GIVEN every runtime module outside recycler/aws WHEN its calls on those clients are collected
    reaching = {
        f"{name}: {match}"
        for name, path in _runtime_modules().items()
        if not name.startswith(f"{SHIPPED}.aws.")
        for match in _CLIENT_CALL.findall(path.read_text(encoding="utf-8"))
    }
    # THEN there are none: reads and writes alike are the gateway's typed methods
    assert reaching == set()
    assert _CLIENT_CALL.findall("reads.call(reads.ecs.tag_resource, resourceArn=a)") == ["tag_resource"]
    assert _CLIENT_CALL.findall("from mypy_boto3_ecs.type_defs import TaskTypeDef") == []


def _stub_imports_outside_type_checking(source: str) -> list[str]:
    """The boto3-stubs modules imported where they would run: the deployed package carries no stubs."""
    guarded: set[int] = set()
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            guarded |= {id(inner) for inner in ast.walk(node)}
    return [
        module
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in guarded
        for module in ([node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names])
        if module.startswith("mypy_boto3")
    ]


def test_the_boto3_stubs_are_imported_for_the_type_checker_only() -> None:
    assert _stub_imports_outside_type_checking("import mypy_boto3_ecs\n") == ["mypy_boto3_ecs"]
    assert _stub_imports_outside_type_checking("if TYPE_CHECKING:\n    import mypy_boto3_ecs\n") == []
    found = {
        name: modules
        for name, path in _runtime_modules().items()
        if (modules := _stub_imports_outside_type_checking(path.read_text(encoding="utf-8")))
    }
    assert found == {}


def test_the_readme_code_map_names_every_module_and_only_those() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Code map", 1)[1].split("\n## ", 1)[0].split("\n### ", 1)[0]
    mapped = set(re.findall(r"^\| `([^`]+)` \|", section, flags=re.M))
    on_disk = {p.relative_to(ROOT).as_posix() for p in _runtime_modules().values() if p.name != "__init__.py"}
    for folder in ("dev", "scripts"):
        on_disk |= {p.relative_to(ROOT).as_posix() for p in (ROOT / folder).glob("*.py") if p.name != "__init__.py"}
    assert mapped == on_disk


def test_only_the_hosts_read_the_environment() -> None:
    # GIVEN every runtime module WHEN its text is read THEN only recycler/hosts/ mentions os.environ or os.getenv
    # (recycler.hosts.environment reads it once; the rooms below take the values as parameters)
    readers = {
        name
        for name, path in _runtime_modules().items()
        if re.search(r"\bos\.(environ|getenv)\b|\bfrom os import\b", path.read_text(encoding="utf-8"))
    }
    assert {name for name in readers if not name.startswith(f"{SHIPPED}.hosts.")} == set()
    assert readers == {"recycler.hosts.environment"}


# Names that were once defined in several modules: one definition each, imported where else it is needed.
DEFINED_ONCE = ("TOOL_NAME", "MAX_ALARMS", "error_code", "retrying", "epoch", "rebuilt")


def _definitions(module: Path) -> list[str]:
    tree = ast.parse(module.read_text())
    names = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names += [t.id for t in targets if isinstance(t, ast.Name)]
    return names


def test_each_shared_helper_and_constant_is_defined_once() -> None:
    found: dict[str, set[str]] = {}
    for name, path in _runtime_modules().items():
        for defined in _definitions(path):
            found.setdefault(defined.lstrip("_"), set()).add(name)
    repeated = {name: sorted(found.get(name, ())) for name in DEFINED_ONCE if len(found.get(name, ())) != 1}
    assert not repeated, repeated


# A constructor takes a context and a policy, not a dozen loose parts (self not counted).
MAX_INIT_PARAMETERS = 6
# Pure data records: many fields, and nothing to do but carry them (a report, a request, a lock item...).
DATA_RECORDS = {
    "recycler.hosts.control": {"LockView"},
    "recycler.hosts.environment": {"Environment"},
    "recycler.lock.history": {"RunEntry"},
    "recycler.lock.record": {"Snapshot", "LockRecord"},
    "recycler.model.progress": {"LiveProgress"},
    "recycler.model.fleet_report": {"FleetReport"},
    "recycler.model.report": {"RecycleReport"},
    "recycler.model.request": {"RecycleRequest"},
    "recycler.model.settings": {"AwsCredentials", "RecycleSettings"},
    "recycler.notification.content": {"Sections"},
    "recycler.notification.settings": {"NotificationConfig"},
    "recycler.run.batches": {"BatchDecision"},
    # What a host hands the engine, each part keyworded with a default: records, not constructors to call in order.
    "recycler.run.context": {"EngineSetup"},
    "recycler.run.ports": {"RunPolicy"},
    "recycler.run.plan": {"Plan", "RepairPlan"},
    "recycler.run.preflight": {"Preflight", "Refusal"},
    "recycler.run.watch": {"WatchState"},
}
# A runtime function longer than this is split into steps that each have a name.
MAX_FUNCTION_LINES = 60


def _is_dataclass(node: ast.ClassDef) -> bool:
    for decorator in node.decorator_list:
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        if (isinstance(target, ast.Name) and target.id == "dataclass") or (
            isinstance(target, ast.Attribute) and target.attr == "dataclass"
        ):
            return True
    return False


def _classes() -> list[tuple[str, ast.ClassDef]]:
    found = []
    for name, path in _runtime_modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef):
                found.append((name, node))
    return found


def _constructor_parameters(node: ast.ClassDef) -> int:
    """How many parameters the class's constructor takes, besides self: its __init__'s, or its dataclass fields."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            args = item.args
            return len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs) - 1
    if _is_dataclass(node):
        # A ClassVar is no field.
        return sum(
            1
            for item in node.body
            if isinstance(item, ast.AnnAssign)
            and isinstance(item.target, ast.Name)
            and "ClassVar" not in ast.unparse(item.annotation)
        )
    return 0


def test_no_constructor_takes_more_than_a_handful_of_parameters() -> None:
    over = {
        f"{module}.{node.name}": n
        for module, node in _classes()
        if (n := _constructor_parameters(node)) > MAX_INIT_PARAMETERS and node.name not in DATA_RECORDS.get(module, ())
    }
    assert over == {}


def _self_attributes(function: ast.FunctionDef) -> set[str]:
    names = set()
    for node in ast.walk(function):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        for target in targets:
            for leaf in ast.walk(target):
                if isinstance(leaf, ast.Attribute) and isinstance(leaf.value, ast.Name) and leaf.value.id == "self":
                    names.add(leaf.attr)
    return names


def test_no_attribute_is_first_set_outside_init() -> None:
    # An object's attributes are all named where it is built, not in whichever method runs first.
    late = []
    for module, node in _classes():
        methods = [item for item in node.body if isinstance(item, ast.FunctionDef)]
        declared = {
            item.target.id
            for item in node.body
            if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
        }
        for method in methods:
            if method.name == "__init__":
                declared |= _self_attributes(method)
        for method in methods:
            if method.name != "__init__":
                late += [f"{module}.{node.name}.{a} (in {method.name})" for a in _self_attributes(method) - declared]
    assert late == []


def _functions() -> dict[str, int]:
    """Every runtime function and method, by dotted name, with its length in lines."""
    lengths: dict[str, int] = {}
    for name, path in _runtime_modules().items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                lengths[f"{name}.{node.name}"] = max(
                    lengths.get(f"{name}.{node.name}", 0), node.end_lineno - node.lineno + 1
                )
    return lengths


def test_no_runtime_function_is_over_the_length_limit() -> None:
    over = {name: n for name, n in _functions().items() if n > MAX_FUNCTION_LINES}
    assert over == {}
