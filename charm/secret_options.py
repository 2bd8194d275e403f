"""Juju user secrets given through the secret-typed options, checked and merged.

`ua_token_secret` holds the Ubuntu Pro token (key `token`); `storage_secret` holds the S3
credentials and the CloudFront private key (keys `access-key`, `secret-access-key`,
`cloudfront-private-key`), which are put into the `storage_config` document before the
daemon's own parser validates it. `charm.py` reads the secrets from Juju into
`SecretOption`; everything here is plain data, like `state.py`.

Every message names the option and the secret's id, and what to run; none ever holds a
value read from a secret. Content is kept out of reprs so no log line can carry it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import yaml

TOKEN_OPTION = "ua_token_secret"  # noqa: S105 (an option name, not a token)
STORAGE_OPTION = "storage_secret"
TOKEN_KEY = "token"  # noqa: S105 (a key name, not a token)
# Each key of the storage secret, and where in the storage_config document its value goes.
STORAGE_KEYS = {
    "access-key": ("storage", "s3", "access-key"),
    "secret-access-key": ("storage", "s3", "secret-access-key"),
    "cloudfront-private-key": ("storage", "s3", "cloudfront", "private-key"),
}
_STORAGE_KEY_LIST = "access-key, secret-access-key and cloudfront-private-key"


class SecretProblem(Exception):
    """A secret the charm cannot use; the message is the status to show (never content)."""


@dataclass(frozen=True)
class SecretOption:
    """A secret-typed option as the charm read it: unset (`id` ""), its content, or why not."""

    option: str
    id: str = ""
    # repr=False: the content is the secret itself.
    content: Mapping[str, str] = field(default_factory=dict, repr=False)
    problem: str = ""

    @property
    def is_set(self) -> bool:
        return bool(self.id)


def unreadable(option: str, secret_id: str, app: str) -> str:
    """Why a configured secret could not be read, and the commands that fix it.

    Juju answers the same for a secret that was removed, one never granted and one whose
    grant was revoked, so the message covers all three.
    """
    return (
        f"cannot read {option} {secret_id}: the secret does not exist or is not granted to "
        f"{app}; grant it (juju grant-secret {secret_id} {app}) or set {option} to a "
        f"secret of this model (juju secrets; juju config {app} {option}=secret:<id>)"
    )


def token_from(secret: SecretOption) -> str:
    """The Ubuntu Pro token in `ua_token_secret`; `SecretProblem` when it cannot be used."""
    if secret.problem:
        raise SecretProblem(secret.problem)
    token = str(secret.content.get(TOKEN_KEY, "")).strip()
    if not token:
        raise SecretProblem(
            f"{secret.option} {secret.id} has no {TOKEN_KEY} key: put the Ubuntu Pro token "
            f"in it (juju update-secret {secret.id} {TOKEN_KEY}=<token>)"
        )
    return token


def storage_values(secret: SecretOption) -> dict[tuple[str, ...], str]:
    """The storage secret's values by their place in storage_config; `SecretProblem` if unfit.

    Unknown keys are refused (a misspelt key would otherwise be silently unused), and the
    two halves of the S3 credentials come together, as the daemon wants them.
    """
    if secret.problem:
        raise SecretProblem(secret.problem)
    fix = f"juju update-secret {secret.id} access-key=<key> secret-access-key=<secret>"
    unknown = sorted(set(secret.content) - set(STORAGE_KEYS))
    if unknown:
        raise SecretProblem(
            f"{secret.option} {secret.id} has unknown keys {', '.join(unknown)}: it takes "
            f"{_STORAGE_KEY_LIST} ({fix} cloudfront-private-key#file=<key.pem>)"
        )
    if not secret.content:
        raise SecretProblem(
            f"{secret.option} {secret.id} has none of the keys {_STORAGE_KEY_LIST} ({fix})"
        )
    halves = [key for key in ("access-key", "secret-access-key") if key in secret.content]
    if len(halves) == 1:
        other = "secret-access-key" if halves[0] == "access-key" else "access-key"
        raise SecretProblem(
            f"{secret.option} {secret.id} has {halves[0]} but no {other}: put both in it ({fix})"
        )
    values = {}
    for key, value in secret.content.items():
        # Keys pasted from a file end with a newline; the PEM keeps its own.
        values[STORAGE_KEYS[key]] = value if key == "cloudfront-private-key" else value.strip()
    return values


def secret_path(path: str, secret: SecretOption) -> str | None:
    """The storage secret's key that a daemon error path (`storage.s3.access-key`) names."""
    for key, place in STORAGE_KEYS.items():
        if key in secret.content and path == ".".join(place):
            return key
    return None


def merge_storage(
    document: str, values: Mapping[tuple[str, ...], str], secret: SecretOption
) -> tuple[str, list[str]] | None:
    """`document` with `values` in place, and the plain keys they replace (dotted paths).

    The document is edited as a YAML node tree, not as Python data, so every scalar the
    operator wrote reaches the daemon's parser as written (`0123` stays `0123`, duplicate
    keys stay duplicate). None when the document is not one YAML mapping: the daemon's own
    error on the document as written says why better than anything here. An empty one
    (filesystem storage) has no section for the values: `SecretProblem`.
    """
    try:
        root = yaml.compose(document, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    if root is None:
        root = yaml.MappingNode("tag:yaml.org,2002:map", [])
    if not isinstance(root, yaml.MappingNode):
        return None
    replaced = []
    for place, value in values.items():
        mapping = root
        for section in place[:-1]:
            mapping = _child_mapping(mapping, section)
            if mapping is None:
                raise SecretProblem(_missing_section(place, secret))
        key = place[-1]
        # A literal block keeps the PEM's lines; the credentials are quoted so no value
        # can be read as anything but a string.
        style = "|" if key == "private-key" else '"'
        node = yaml.ScalarNode("tag:yaml.org,2002:str", value, style=style)
        found = False
        for index, (key_node, _) in enumerate(mapping.value):
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                mapping.value[index] = (key_node, node)
                found = True
        if found:
            replaced.append(".".join(place))
        else:
            mapping.value.append((yaml.ScalarNode("tag:yaml.org,2002:str", key), node))
    # Wide lines: a long credential stays on one line of the rendered file.
    return yaml.serialize(root, Dumper=yaml.SafeDumper, width=4096), replaced


def _child_mapping(mapping: yaml.MappingNode, key: str) -> yaml.MappingNode | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node if isinstance(value_node, yaml.MappingNode) else None
    return None


def _missing_section(place: tuple[str, ...], secret: SecretOption) -> str:
    section = ".".join(place[:-1])
    key = next(k for k, p in STORAGE_KEYS.items() if p == place)
    what = "CloudFront" if "cloudfront" in place else "S3"
    return (
        f"{secret.option} {secret.id} has {key}, but storage_config has no {section} "
        f"section to put it in: configure {what} in storage_config (juju config aar -f "
        f"config.yaml), or remove {key} from the secret (juju update-secret {secret.id} …)"
    )


def ignored_notice(plain: str, option: str, secret_id: str, fix: str) -> str:
    """The log line for a plain setting a secret overrides (it names, never shows, it)."""
    return f"{plain} is ignored: {option} {secret_id} sets it; the secret wins ({fix})"
