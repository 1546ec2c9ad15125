"""The deploy template (azure.yaml + infra/), checked from a parse: no Bicep compiler can be
installed here, so every .bicep file is parsed with pycep-parser and the checks below run on the
parse. They compare the app settings the template sets with what Settings reads (its
SETTING_NAMES / CONNECTION_SETTINGS) and what local.settings.example.json lists, and check that
each storage operation the code performs has its role."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import fields
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from pycep import BicepParser

from shared.secrets_rule import SECRET_SETTING_PREFIX
from shared.settings import (
    AZURE_HOST_MARKERS,
    CONNECTION_SETTINGS,
    HOST_SETTINGS,
    SETTING_NAMES,
    Settings,
)
from shared.storage import HOST_STORAGE_SETTING, IDENTITY_SUFFIXES

REPO = Path(__file__).resolve().parents[2]
INFRA = REPO / "infra"

# Settings the template sets that Settings does not read, each with its reader.
PLATFORM_SETTINGS = {
    "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": "Entra auth for telemetry (local auth is off)",
    "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET": "App Service Authentication's client secret",
}
# ...and connection secrets: settings a connection names in credential.secretSetting, which the
# API accepts only with this prefix (shared/secrets_rule.py).
# Set only in local.settings.example.json: for `func start`, and an example secret setting.
LOCAL_ONLY_SETTINGS = {
    "FUNCTIONS_WORKER_RUNTIME",
    "AzureWebJobsFeatureFlags",
}
# Injected by the platform, never app settings.
PLATFORM_INJECTED = {*AZURE_HOST_MARKERS, "WEBSITE_AUTH_ENABLED", "FUNCTIONS_WORKER_RUNTIME"}

# Built-in role definition IDs and what the code does with each service.
ROLE_IDS = {
    "Storage Blob Data Owner": "b7e6dc6d-f1e8-4753-8033-0f276bb0955b",
    "Storage Queue Data Contributor": "974c5e8b-45b9-4653-ba55-5f855dd0fb88",
    "Storage Table Data Contributor": "0a9a7e1f-b9d0-4cc4-a60d-0319b160aaa3",
    "Monitoring Metrics Publisher": "3913510d-42f4-4e42-8a64-420c390055eb",
    "Key Vault Secrets User": "4633458b-17de-408a-b874-0445c86b69e6",
}
# SDK module -> (service, the role whose data actions cover every call the code makes on it).
SDK_SERVICES = {
    "azure.data.tables": ("table", "Storage Table Data Contributor"),  # create table, CRUD, batch
    "azure.storage.queue": ("queue", "Storage Queue Data Contributor"),  # create, send/receive/
    "azure.storage.blob": ("blob", "Storage Blob Data Owner"),  # update/delete messages
}


@cache
def parse(path: Path) -> dict[str, Any]:
    return BicepParser().parse(file_path=path)  # type: ignore[no-any-return]


def bicep_files() -> list[Path]:
    return sorted(INFRA.rglob("*.bicep"))


def unquote(key: str) -> str:
    return key[1:-1] if len(key) > 1 and key[0] == key[-1] == "'" else key


def resources(doc: Mapping[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {n: r for n, r in doc.get("resources", {}).items() if r["type"] == type_}


def app_settings_doc() -> tuple[dict[str, Any], dict[str, Any]]:
    """(api.bicep parse, its app settings object)"""
    for path in bicep_files():
        doc = parse(path)
        for resource in resources(doc, "Microsoft.Web/sites/config").values():
            if resource["config"]["name"] == "appsettings":
                props = resource["config"]["properties"]
                return doc, {unquote(k): v for k, v in props.items()}
    raise AssertionError("no Microsoft.Web/sites/config 'appsettings' resource in infra/")


def main_module_params(module_path: str) -> dict[str, Any]:
    main = parse(INFRA / "main.bicep")
    for module in main["modules"].values():
        if module["detail"]["path"] == module_path:
            return dict(module["config"]["params"])
    raise AssertionError(f"main.bicep does not use {module_path}")


def resolve(value: Any, module_doc: Mapping[str, Any], module_path: str) -> Any:
    """A literal setting value, following a module parameter to main.bicep's default."""
    if isinstance(value, str) and value in module_doc.get("parameters", {}):
        passed = main_module_params(module_path).get(value)
        main_params = parse(INFRA / "main.bicep")["parameters"]
        if isinstance(passed, str) and passed in main_params:
            return main_params[passed]["default"]
        return passed
    return value


def local_settings() -> dict[str, str]:
    return json.loads((REPO / "local.settings.example.json").read_text())["Values"]  # type: ignore[no-any-return]


def identity_keys(connection: str) -> set[str]:
    return {f"{connection}__{suffix}" for suffix in IDENTITY_SUFFIXES}


def walk(node: Any) -> Iterator[Any]:
    yield node
    if isinstance(node, dict):
        for value in node.values():
            yield from walk(value)
    elif isinstance(node, list):
        for value in node:
            yield from walk(value)


# --- the layout ------------------------------------------------------------------------------


def test_azd_layout() -> None:
    azure_yaml = (REPO / "azure.yaml").read_text()
    assert re.search(r"^services:\n  api:\n", azure_yaml, re.M)
    assert "host: function" in azure_yaml and "language: python" in azure_yaml
    assert (INFRA / "main.bicep").exists() and (INFRA / "main.parameters.json").exists()
    parameters = json.loads((INFRA / "main.parameters.json").read_text())["parameters"]
    main = parse(INFRA / "main.bicep")
    required = {n for n, p in main["parameters"].items() if p["default"] is None}
    assert required <= set(parameters), "main.parameters.json must give every required param"
    assert set(parameters) <= set(main["parameters"])


@pytest.mark.parametrize("path", bicep_files(), ids=lambda p: str(p.relative_to(INFRA)))
def test_every_bicep_file_parses(path: Path) -> None:
    doc = parse(path)
    assert doc.get("resources") or doc.get("modules")


def test_modules_get_exactly_their_parameters() -> None:
    main = parse(INFRA / "main.bicep")
    for name, module in main["modules"].items():
        target = INFRA / module["detail"]["path"]
        assert target.exists(), f"module {name}: {target} missing"
        declared = parse(target)["parameters"]
        given = set(module["config"]["params"])
        required = {n for n, p in declared.items() if p["default"] is None}
        assert given <= set(declared), f"module {name}: unknown params {given - set(declared)}"
        assert required <= given, f"module {name}: missing params {required - given}"


# --- app settings: template == Settings == local.settings.example.json ------------------------


def test_settings_reads_only_the_names_it_declares() -> None:
    """SETTING_NAMES is the list: from_env reading anything else fails here, naming it."""

    class Recording(dict[str, str]):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            self.read: set[str] = set()

        def get(self, key: str, default: Any = None) -> Any:
            self.read.add(key)
            return super().get(key, default)

        def __getitem__(self, key: str) -> str:
            self.read.add(key)
            return super().__getitem__(key)

    env = Recording({HOST_STORAGE_SETTING: "UseDevelopmentStorage=true", "AUTH_MODE": "easyauth"})
    Settings.from_env(env)
    allowed = set(SETTING_NAMES) | set(CONNECTION_SETTINGS) | PLATFORM_INJECTED
    for connection in CONNECTION_SETTINGS:
        allowed |= identity_keys(connection)
    undeclared = sorted(env.read - allowed)
    assert not undeclared, f"Settings.from_env reads {undeclared}: add them to SETTING_NAMES"
    unread = sorted(set(SETTING_NAMES) - env.read)
    assert not unread, f"SETTING_NAMES lists {unread}, which from_env never reads"


def test_template_sets_every_setting_settings_reads() -> None:
    _, settings = app_settings_doc()
    missing = [name for name in SETTING_NAMES if name not in settings]
    assert not missing, f"infra app settings lack {missing} (add them to api.bicep)"
    for connection in CONNECTION_SETTINGS:
        assert connection in settings or identity_keys(connection) & set(settings), connection


def test_template_sets_nothing_unexplained() -> None:
    _, settings = app_settings_doc()
    known = set(SETTING_NAMES) | set(CONNECTION_SETTINGS) | set(PLATFORM_SETTINGS)
    for connection in CONNECTION_SETTINGS:
        known |= identity_keys(connection)
    unexplained = {n for n in set(settings) - known if not n.startswith(SECRET_SETTING_PREFIX)}
    assert sorted(unexplained) == []


def test_local_settings_example_lists_every_setting() -> None:
    values = {n: v for n, v in local_settings().items() if not n.startswith(SECRET_SETTING_PREFIX)}
    expected = set(SETTING_NAMES) | set(CONNECTION_SETTINGS) | LOCAL_ONLY_SETTINGS
    missing, extra = sorted(expected - set(values)), sorted(set(values) - expected)
    assert not missing, f"local.settings.example.json lacks {missing}"
    assert not extra, f"local.settings.example.json lists {extra}, which nothing reads"


def test_readme_settings_table_lists_every_setting() -> None:
    readme = (REPO / "README.md").read_text()
    table = readme[readme.index("## Settings") :]
    table = table[: table.index("\n## ", 1)]
    missing = [n for n in (*SETTING_NAMES, *CONNECTION_SETTINGS) if f"`{n}`" not in table]
    assert not missing, f"README settings table lacks {missing}"


def test_trigger_settings_are_app_settings(function_app_functions: dict[str, Any]) -> None:
    """%NAME% in a trigger resolves from app settings only; each named connection is set."""
    _, settings = app_settings_doc()
    local = local_settings()
    for function in function_app_functions.values():
        for binding in json.loads(function.get_function_json())["bindings"]:
            for value in binding.values():
                for name in re.findall(r"%([A-Za-z0-9_]+)%", str(value)):
                    assert name in HOST_SETTINGS, f"{name} must be in HOST_SETTINGS"
                    assert name in settings and local.get(name), name
            connection = binding.get("connection")
            if connection:
                assert connection in CONNECTION_SETTINGS
                assert connection in settings or identity_keys(connection) & set(settings)


def test_template_values_are_valid_and_equal_the_code_defaults() -> None:
    doc, settings = app_settings_doc()
    module_path = "app/api.bicep"
    env: dict[str, str] = {}
    for name in SETTING_NAMES:
        value = resolve(settings[name], doc, module_path)
        if isinstance(value, str) and "${" not in value and value not in doc["parameters"]:
            env[name] = value
    for name in HOST_SETTINGS:
        assert env.get(name), f"{name} must be a literal (or a param default) in the template"
    deployed = Settings.from_env({HOST_STORAGE_SETTING: "UseDevelopmentStorage=true", **env})
    defaults = Settings.from_env(
        {HOST_STORAGE_SETTING: "UseDevelopmentStorage=true", "AUTH_MODE": "easyauth"}
    )
    differs = {"storage", "environ", "auth_mode"}  # deliberately set for Azure
    for f in fields(Settings):
        if f.name not in differs:
            assert getattr(deployed, f.name) == getattr(defaults, f.name), f.name
    assert deployed.auth_mode.value == "easyauth"  # App Service Authentication in front


# --- identity, storage, roles ------------------------------------------------------------------


def test_storage_is_identity_based_with_shared_keys_off() -> None:
    doc, settings = app_settings_doc()
    prefix = HOST_STORAGE_SETTING
    assert prefix not in settings  # no connection string
    assert settings[f"{prefix}__credential"] == "managedidentity"
    assert settings[f"{prefix}__clientId"] in doc["parameters"]  # the identity's client id
    for service in ("blob", "queue", "table"):
        assert f"{prefix}__{service}ServiceUri" in settings
    accounts = [
        r
        for path in bicep_files()
        for r in resources(parse(path), "Microsoft.Storage/storageAccounts").values()
        if not r["existing"]
    ]
    assert len(accounts) == 1
    assert accounts[0]["config"]["properties"]["allowSharedKeyAccess"] is False


def test_flex_consumption_with_a_user_assigned_identity() -> None:
    doc, _ = app_settings_doc()
    (plan,) = resources(doc, "Microsoft.Web/serverfarms").values()
    assert plan["config"]["sku"] == {"tier": "FlexConsumption", "name": "FC1"}
    (site,) = resources(doc, "Microsoft.Web/sites").values()
    config = site["config"]
    assert config["identity"]["type"] == "UserAssigned"
    assert config["properties"]["keyVaultReferenceIdentity"] == "identityId"
    app_config = config["properties"]["functionAppConfig"]
    assert app_config["runtime"] == {"name": "python", "version": "3.11"}
    storage = app_config["deployment"]["storage"]
    assert storage["type"] == "blobContainer"
    assert storage["authentication"]["type"] == "UserAssignedIdentity"


def test_monitoring_and_key_vault_without_local_keys() -> None:
    platform = parse(INFRA / "app" / "platform.bicep")
    (insights,) = resources(platform, "Microsoft.Insights/components").values()
    assert insights["config"]["properties"]["DisableLocalAuth"] is True
    (vault,) = resources(platform, "Microsoft.KeyVault/vaults").values()
    assert vault["config"]["properties"]["enableRbacAuthorization"] is True
    _, settings = app_settings_doc()
    references = [
        name
        for name, value in settings.items()
        if isinstance(value, str) and value.startswith("${keyVaultReference}")
    ]
    secrets = {n for n in settings if n.startswith(SECRET_SETTING_PREFIX)}
    assert secrets, "the template should hold a connection secret reference"
    assert secrets | {"MICROSOFT_PROVIDER_AUTHENTICATION_SECRET", "TOKEN_CACHE_KEY"} <= set(
        references
    )
    doc, _ = app_settings_doc()
    assert doc["variables"]["keyVaultReference"]["value"].startswith(
        "@Microsoft.KeyVault(VaultName="
    )


def test_app_service_authentication_fronts_console_and_api() -> None:
    doc, _ = app_settings_doc()
    (auth,) = [
        r
        for r in resources(doc, "Microsoft.Web/sites/config").values()
        if r["config"]["name"] == "authsettingsV2"
    ]
    props = auth["config"]["properties"]
    assert props["platform"]["enabled"] is True
    assert props["globalValidation"]["requireAuthentication"] is True
    assert props["globalValidation"]["excludedPaths"] == ["/api/health"]
    aad = props["identityProviders"]["azureActiveDirectory"]
    assert aad["enabled"] is True and aad["registration"]["clientId"] == "apiClientId"


def role_assignments() -> list[tuple[str, str, str]]:
    """(scope resource symbol, role definition id, principal) of every role assignment."""
    out = []
    for path in bicep_files():
        doc = parse(path)
        role_vars = doc.get("variables", {}).get("roles", {}).get("value", {})
        for r in resources(doc, "Microsoft.Authorization/roleAssignments").values():
            config = r["config"]
            if "condition" in config:  # `= if (...) {...}`
                config = config["config"]
            props = config["properties"]
            accessors = [
                n["operator"]["operands"]["operand_2"]
                for n in walk(props["roleDefinitionId"])
                if isinstance(n, dict) and n.get("operator", {}).get("type") == "property_accessor"
            ]
            (role_key,) = accessors
            out.append((config["scope"], role_vars[role_key], props["principalId"]))
    return out


def sdk_services_used() -> set[str]:
    """Storage services the app's code calls (imports of the data-plane SDKs under shared/)."""
    used = set()
    for path in (REPO / "shared").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                for module, (service, _) in SDK_SERVICES.items():
                    if name == module or name.startswith(module + "."):
                        used.add(service)
    return used


def test_each_storage_operation_the_code_performs_has_its_role(
    function_app_functions: dict[str, Any],
) -> None:
    granted = {
        (scope, role)
        for scope, role, principal in role_assignments()
        if principal == "identityPrincipalId"
    }
    needed = {SDK_SERVICES[m][1] for m in SDK_SERVICES if SDK_SERVICES[m][0] in sdk_services_used()}
    assert {"Storage Table Data Contributor", "Storage Queue Data Contributor"} <= needed
    # The host itself: timer locks and schedule monitor blobs, the deployment package (blob),
    # the queue trigger (queue).
    bindings = [
        b
        for f in function_app_functions.values()
        for b in json.loads(f.get_function_json())["bindings"]
    ]
    if any(b["type"] == "timerTrigger" for b in bindings):
        needed.add("Storage Blob Data Owner")
    if any(b["type"] == "queueTrigger" for b in bindings):
        needed.add("Storage Queue Data Contributor")
    needed.add("Storage Blob Data Owner")  # functionAppConfig.deployment.storage
    for role in sorted(needed):
        assert ("storage", ROLE_IDS[role]) in granted, f"the identity lacks {role} on storage"
    assert ("applicationInsights", ROLE_IDS["Monitoring Metrics Publisher"]) in granted
    assert ("keyVault", ROLE_IDS["Key Vault Secrets User"]) in granted
