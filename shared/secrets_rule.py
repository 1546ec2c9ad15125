"""Which app settings an API caller may name (issue 11 #10): one rule, used where a name is
accepted (API validation) and where its value is read (run time).

A connection's ``secretSetting`` names the app setting that holds its client secret; the value
is posted to a tenant the Admin chooses. So a caller must never be able to name the platform's
settings (``AzureWebJobsStorage``, ``IDENTITY_HEADER``, ...) nor the app's own: a name is
accepted only with the documented prefix of its kind and never with a platform prefix. The
answer depends on the name alone (never on whether such a setting exists), so errors cannot be
used to probe the environment.

Kinds of caller-named settings and their prefixes (README "Settings"):
- ``SEGEXP_SECRET_``: a connection's client secret (``credential.secretSetting``).
Another feature that lets callers name a setting adds its own prefix here and calls
``setting_name_problem(name, prefix)``.
"""

from __future__ import annotations

import re

SECRET_SETTING_PREFIX = "SEGEXP_SECRET_"
MAX_NAME_CHARS = 128
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Set or read by the platform (Functions host, App Service, Container Apps, managed identity,
# App Service Authentication, Application Insights); compared case-insensitively.
PLATFORM_PREFIXES = (
    "AZUREWEBJOBS",
    "AZURE_",
    "WEBSITE_",
    "WEBSITES_",
    "FUNCTIONS_",
    "APPSETTING_",
    "APPSVC_",
    "IDENTITY_",
    "MSI_",
    "MICROSOFT_PROVIDER_",
    "CONTAINER_APP_",
    "APPLICATIONINSIGHTS_",
    "APPINSIGHTS_",
    "SCM_",
    "DOCKER_",
    "KUBERNETES_",
)


def setting_name_problem(name: object, prefix: str) -> str | None:
    """None when a caller may name ``name`` for a setting of the kind ``prefix`` stands for;
    otherwise what is wrong, in words that do not depend on the environment."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or len(name) > MAX_NAME_CHARS:
        return (
            f"must be an app setting name (letters, digits and _, up to {MAX_NAME_CHARS} "
            "characters)"
        )
    upper = name.upper()
    if any(upper.startswith(p) for p in PLATFORM_PREFIXES) or not name.startswith(prefix):
        return f"must be the name of an app setting that starts with {prefix} (see the README)"
    if len(name) == len(prefix):
        return f"must name a setting after the prefix {prefix}"
    return None


def secret_setting_problem(name: object) -> str | None:
    """The rule for a connection's ``secretSetting``."""
    return setting_name_problem(name, SECRET_SETTING_PREFIX)
