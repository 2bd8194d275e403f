"""The charm's decisions, as plain data: what the config means, whom to trust, what to say.

No `ops` and no machine access here: `charm.py` reads Juju into these types and applies the
result with `workload.py`. Validation and certificate parsing are the daemon's own code,
reached through the `aar_ext` extension module, so the charm cannot disagree with the
daemon about what is valid.

Long on purpose: each decision is a small pure function next to the data it reads,
tested one by one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aar_ext
from secret_options import (
    STORAGE_OPTION,
    TOKEN_OPTION,
    SecretOption,
    SecretProblem,
    ignored_notice,
    merge_storage,
    secret_path,
    storage_values,
    token_from,
)

ENDPOINTS = ("client", "publisher")
# The AMS charm's endpoint for each of ours, as the Anbox Cloud docs relate them
# (`juju add-relation aar:client ams:registry-client`).
AMS_ENDPOINTS = {"client": "registry-client", "publisher": "registry-publisher"}
# Across models, the offering side knows the consumer only as remote-<uuid>; no command
# typed in the AMS model accepts that name.
_CROSS_MODEL_APP = re.compile(r"remote-[0-9a-f]{32}")
TOKEN_HINT = "juju config aar ua_token=<token>"  # noqa: S105 (a placeholder, not a token)
# Trust-store entries whose origin starts with this were added for a relation (see
# `RemoteUnit.origin`); the charm removes them when the relation no longer carries them.
# Anything else (the CLI, the add-client action) is the operator's and is left alone.
RELATION_ORIGIN_PREFIX = "relation "


class InvalidConfig(Exception):
    """A charm setting the daemon would refuse; the message is the status to show."""


@dataclass(frozen=True)
class CharmConfig:
    """The settings the daemon's config file is made of, validated."""

    # repr=False: storage_config holds S3 credentials; a dataclass repr must not log them.
    storage_config: str = field(repr=False)
    storage: dict
    port: int
    location: str

    @classmethod
    def validate(
        cls,
        storage_config: str,
        port: object,
        location: str,
        state_directory: str,
        storage_secret: SecretOption | None = None,
    ) -> CharmConfig:
        """Check the options the daemon reads; `InvalidConfig` carries the Blocked message.

        With `storage_secret` set, its values are put into `storage_config` first.
        """
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidConfig(
                f"invalid port {port}: use a TCP port from 1 to 65535 (juju config aar port=3000)"
            )
        if storage_secret is not None and storage_secret.is_set:
            storage_config = _with_secret(storage_config, storage_secret, state_directory)
        try:
            storage = aar_ext.check_storage_config(storage_config, state_directory)
        except aar_ext.ConfigError as e:
            raise InvalidConfig(_invalid_storage(str(e))) from None
        return cls(
            storage_config=storage_config, storage=dict(storage), port=port, location=location
        )

    def render(self, state_directory: str, advertise: Iterable[str]) -> str:
        """The daemon's config file for these settings (the daemon's own renderer)."""
        try:
            return aar_ext.render_config(
                state_directory, self.port, self.storage_config, sorted(set(advertise))
            )
        except aar_ext.ConfigError as e:
            if e.path.startswith("http.advertise"):
                raise InvalidConfig(
                    f"invalid location {self.location!r}: {e.detail}; "
                    "set a host name or IP address (juju config aar location=<address>)"
                ) from None
            raise InvalidConfig(f"cannot render the daemon's config: {e}") from None


def _invalid_storage(error: str) -> str:
    return (
        f"invalid storage_config: {error} (fix it with juju config aar -f config.yaml; "
        "the registry keeps serving with its previous storage)"
    )


def _with_secret(document: str, secret: SecretOption, state_directory: str) -> str:
    """`document` with the storage secret's values in it, checked by the daemon's parser.

    An error in what the secret supplied names the secret's key; any other is the daemon's
    error on the document as the operator wrote it, so its line and column are theirs.
    """
    try:
        values = storage_values(secret)
        merged = merge_storage(document, values, secret)
    except SecretProblem as e:
        raise InvalidConfig(str(e)) from None
    if merged is None:
        return document  # not a YAML mapping: the daemon's parser says why
    text, _ = merged
    try:
        aar_ext.check_storage_config(text, state_directory)
        return text
    except aar_ext.ConfigError as e:
        merged_error = e
    key = secret_path(merged_error.path, secret)
    if key is not None:
        raise InvalidConfig(
            f"invalid {key} in {secret.option} {secret.id}: {merged_error.detail} (fix it "
            f"with juju update-secret {secret.id} …)"
        )
    try:
        aar_ext.check_storage_config(document, state_directory)
    except aar_ext.ConfigError as e:
        if e.path == merged_error.path:
            raise InvalidConfig(_invalid_storage(str(e))) from None
    # The document alone fails elsewhere (a key the secret supplies is missing from it):
    # the merged document's lines are not the operator's, so only the key path is shown.
    raise InvalidConfig(_invalid_storage(f"{merged_error.path}: {merged_error.detail}"))


@dataclass(frozen=True)
class Options:
    """`juju config aar`, read in one place, and the daemon's settings validated from it.

    `config` is None when those settings are invalid, and `invalid` says why. The token and
    the address options are kept either way: an invalid config leaves the last good one
    running, and whether that one serves depends only on the token.
    """

    # repr=False: the token must not reach a log line through a dataclass repr.
    ua_token: str = field(repr=False)
    location: str
    public_interface: str
    config: CharmConfig | None
    invalid: str = ""
    # Why the token secret cannot be used; the token is then "" though one was configured.
    token_invalid: str = ""
    # Plain settings a secret overrides, to tell the operator (names only, never values).
    ignored: tuple[str, ...] = ()

    @classmethod
    def read(
        cls,
        options: Mapping[str, object],
        state_directory: str,
        secrets: Mapping[str, SecretOption] | None = None,
    ) -> Options:
        """Read every option the charm uses; nothing else reads `juju config`.

        `secrets` are the secret-typed options as the charm read them from Juju; a set one
        wins over the plain option it stands for.
        """
        secrets = secrets or {}
        location = str(options.get("location") or "").strip()
        storage_config = str(options.get("storage_config") or "")
        storage_secret = secrets.get(STORAGE_OPTION) or SecretOption(STORAGE_OPTION)
        try:
            config = CharmConfig.validate(
                storage_config,
                options.get("port", 3000),
                location,
                state_directory,
                storage_secret,
            )
            invalid = ""
        except InvalidConfig as e:
            config, invalid = None, str(e)
        ignored = list(_storage_ignored(storage_config, storage_secret))
        ua_token = str(options.get("ua_token") or "").strip()
        token_invalid = ""
        token_secret = secrets.get(TOKEN_OPTION) or SecretOption(TOKEN_OPTION)
        if token_secret.is_set:
            if ua_token:
                ignored.insert(
                    0,
                    ignored_notice(
                        "ua_token",
                        TOKEN_OPTION,
                        token_secret.id,
                        "juju config aar --reset ua_token",
                    ),
                )
            try:
                ua_token = token_from(token_secret)
            except SecretProblem as e:
                ua_token, token_invalid = "", str(e)
        return cls(
            ua_token=ua_token,
            location=location,
            public_interface=str(options.get("public_interface") or "").strip(),
            config=config,
            invalid=invalid,
            token_invalid=token_invalid,
            ignored=tuple(ignored),
        )


def _storage_ignored(storage_config: str, secret: SecretOption) -> list[str]:
    """The storage_config keys the storage secret overrides, as log lines."""
    if not secret.is_set or secret.problem:
        return []
    try:
        merged = merge_storage(storage_config, storage_values(secret), secret)
    except SecretProblem:
        return []
    replaced = merged[1] if merged else []
    return [
        "storage_config's "
        + ignored_notice(path, secret.option, secret.id, "leave it out of storage_config")
        for path in replaced
    ]


def public_interface_notice(options: Options, address: str) -> str:
    """What to tell an operator who still sets `public_interface`; "" for nothing.

    `address` is the one advertised in its stead ("" when the interface has none).
    """
    interface = options.public_interface
    if not interface:
        return ""
    if options.location:
        return (
            f"public_interface is deprecated, and public_interface={interface} is ignored: "
            "location is set (juju config aar --reset public_interface)"
        )
    if not address:
        return ""
    return (
        f"public_interface is deprecated: advertising {address}, the address of {interface}; "
        f"set it as location instead (juju config aar location={address}; "
        "juju config aar --reset public_interface)"
    )


def describe_storage(storage: Mapping[str, object]) -> str:
    """`fs /var/lib/aar/data` or `s3 aar0 (eu-west-3) via CloudFront`."""
    if storage.get("kind") == "s3":
        text = f"s3 {storage['bucket']} ({storage['region']})"
        if storage.get("endpoint"):
            text += f" at {storage['endpoint']}"
        if storage.get("cloudfront"):
            text += " via CloudFront"
        return text
    return f"fs {storage.get('root_directory', '')}"


def plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def active_message(
    address: str, port: int, storage: Mapping[str, object], trusted: list, holds: str = ""
) -> str:
    """`serving 10.0.0.5:3000 · s3 aar0 (eu-west-3) via CloudFront · 3 clients, 1 publisher`.

    `holds` (see `holdings`), when known, follows: `· 3 apps, 7 versions, 117.7 MiB`.
    """
    clients = sum(1 for cert in trusted if cert.get("role") == "client")
    publishers = sum(1 for cert in trusted if cert.get("role") == "publisher")
    message = (
        f"serving {address}:{port} · {describe_storage(storage)} · "
        f"{plural(clients, 'client')}, {plural(publishers, 'publisher')}"
    )
    return f"{message} · {holds}" if holds else message


def holdings(status: Mapping[str, object]) -> str:
    """What `aar status --format json` says the registry holds, in a few words.

    `3 apps, 7 versions, 117.7 MiB`; `index not loaded yet` while the daemon has not read
    its storage; "" for anything it cannot read, so the status says no more than it knows.
    """
    if status.get("index_loaded") is False:
        return "index not loaded yet"
    counts = [status.get(key) for key in ("applications", "versions", "blob_bytes")]
    if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in counts):
        return ""
    applications, versions, size = counts
    return f"{plural(applications, 'app')}, {plural(versions, 'version')}, {human_bytes(size)}"


def human_bytes(size: int) -> str:
    """`0 B`, `512 B`, `117.7 MiB`, `2.0 TiB`: binary units, one decimal past bytes."""
    if size < 1024:
        return f"{size} B"
    value = float(size)
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        value /= 1024
        if value < 1024 or unit == "TiB":
            break
    return f"{value:.1f} {unit}"


def decode_relation_value(value: str) -> str:
    """A relation value as its sender meant it, JSON-encoded or not.

    The AMS charm is a reactive charm, and charms.reactive publishes every value through
    `json.dumps`: `mode` arrives as `"publisher"`, quotes included, and the certificate as
    one quoted line with `\\n` escapes. Only a value that is exactly one JSON string literal
    is decoded; anything else (a raw PEM, `client`, `42`, `null`) is taken as sent.
    """
    if not value.lstrip().startswith('"'):
        return value
    try:
        decoded = json.loads(value)
    except ValueError:
        return value
    return decoded if isinstance(decoded, str) else value


def ams_application(unit: str) -> str:
    """The AMS application to name in a command, `<ams>` when this model cannot know it."""
    app = unit.rpartition("/")[0] or unit
    return "<ams>" if _CROSS_MODEL_APP.fullmatch(app) else app


@dataclass(frozen=True)
class RemoteUnit:
    """What one AMS unit put in its relation data, decoded."""

    endpoint: str
    relation_id: int
    unit: str
    certificate: str
    mode: str

    @classmethod
    def from_data(
        cls, endpoint: str, relation_id: int, unit: str, data: Mapping[str, str]
    ) -> RemoteUnit:
        """Read a unit's databag, whether a reactive charm JSON-encoded it or not."""
        return cls(
            endpoint=endpoint,
            relation_id=relation_id,
            unit=unit,
            certificate=decode_relation_value(data.get("certificate", "")),
            mode=decode_relation_value(data.get("mode", "")),
        )

    @property
    def origin(self) -> str:
        """Recorded in the trust store, so the charm knows which entries are its own."""
        return f"{RELATION_ORIGIN_PREFIX}{self.endpoint}:{self.relation_id} {self.unit}"


@dataclass(frozen=True)
class Wanted:
    """A certificate the relations ask to trust."""

    fingerprint: str
    role: str
    pem: str
    origin: str
    unit: str


@dataclass
class TrustPlan:
    """Whom the relations ask to trust, and what in them is wrong."""

    wanted: dict[str, Wanted] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def to_trust(self, trusted: Mapping[str, Mapping[str, str]]) -> list[Wanted]:
        """The wanted certificates the trust store lacks, or holds in another role."""
        return [
            wanted
            for fingerprint, wanted in self.wanted.items()
            if fingerprint not in trusted or trusted[fingerprint]["role"] != wanted.role
        ]

    def to_untrust(self, trusted: Mapping[str, Mapping[str, str]]) -> list[Mapping[str, str]]:
        """The entries added for a relation that no relation asks for any more.

        Certificates trusted by hand (`aar trust add`, the add-client action) are the
        operator's and never in this list.
        """
        return [
            entry
            for fingerprint, entry in trusted.items()
            if fingerprint not in self.wanted
            and str(entry.get("origin", "")).startswith(RELATION_ORIGIN_PREFIX)
        ]


def plan_trust(
    units: Iterable[RemoteUnit],
    trusted: Iterable[Mapping[str, str]],
    revoked: Iterable[str],
) -> TrustPlan:
    """Decide which relation certificates to trust, in which role.

    Rules (docs/charm.md, "Relation interface"):
    * a unit is trusted in the role of the endpoint it arrived on;
    * a `mode` that differs from the endpoint is refused and named;
    * a certificate the daemon cannot parse is refused, naming the unit;
    * the publisher endpoint takes one unit: with several, the one already trusted as
      publisher keeps its access and no other is added;
    * a certificate seen on both endpoints is a publisher (publisher includes reads);
    * a revoked certificate is never trusted again: the unit needs a new one.
    Units that have not sent a certificate yet are skipped.
    """
    plan = TrustPlan()
    current_publishers = _relation_publishers(trusted)
    revoked = set(revoked)
    candidates: dict[str, list[Wanted]] = {endpoint: [] for endpoint in ENDPOINTS}
    for unit in sorted(units, key=lambda u: (u.endpoint, u.relation_id, _unit_order(u.unit))):
        if not unit.certificate.strip():
            continue
        checked = _check_unit(unit, revoked)
        if isinstance(checked, Wanted):
            candidates[unit.endpoint].append(checked)
        else:
            plan.problems.append(checked)

    publishers = candidates["publisher"]
    if len({w.unit for w in publishers}) > 1:
        kept = [w for w in publishers if w.fingerprint in current_publishers][:1]
        plan.problems.append(publisher_limit_problem(publishers, kept))
        publishers = kept
    for wanted in [*publishers, *candidates["client"]]:
        plan.wanted.setdefault(wanted.fingerprint, wanted)
    return plan


def _check_unit(unit: RemoteUnit, revoked: set[str]) -> Wanted | str:
    """The certificate a unit asks to have trusted, or why it cannot be (a Blocked text)."""
    mismatch = mode_problem(unit)
    if mismatch:
        return mismatch
    try:
        info = aar_ext.parse_certificate(
            unit.certificate, f"the certificate of {unit.unit} (aar:{unit.endpoint})"
        )
    except aar_ext.CertificateError as e:
        return f"invalid certificate from {unit.unit}: {e}"
    if info["fingerprint"] in revoked:
        return (
            f"the certificate of {unit.unit} (aar:{unit.endpoint}) was revoked; "
            "give that AMS a new certificate, or remove the relation (juju "
            f"remove-relation {ams_application(unit.unit)} aar:{unit.endpoint})"
        )
    return Wanted(info["fingerprint"], unit.endpoint, unit.certificate, unit.origin, unit.unit)


def _relation_publishers(trusted: Iterable[Mapping[str, str]]) -> set[str]:
    """The fingerprints trusted as publisher for a relation (not by hand)."""
    return {
        c["fingerprint"]
        for c in trusted
        if c.get("role") == "publisher"
        and str(c.get("origin", "")).startswith(f"{RELATION_ORIGIN_PREFIX}publisher:")
    }


def mode_problem(unit: RemoteUnit) -> str | None:
    """Why a unit's `mode` does not fit its endpoint, with the commands that fix it."""
    mode = unit.mode.strip() or unit.endpoint
    if mode == unit.endpoint:
        return None
    app = ams_application(unit.unit)
    if mode not in ENDPOINTS:
        return (
            f"{unit.unit} sends registry mode {mode[:40]!r}, which is neither client nor "
            f"publisher; relate {app}:{AMS_ENDPOINTS['client']} to aar:client (read-only) "
            f"or {app}:{AMS_ENDPOINTS['publisher']} to aar:publisher (read/write)"
        )
    wanted = f"{app}:{AMS_ENDPOINTS[mode]}"
    return (
        f"{unit.unit} asks for {mode} access on aar:{unit.endpoint}; relate {wanted} to "
        f"aar:{mode} instead (juju remove-relation {app} aar:{unit.endpoint}; "
        f"juju relate {wanted} aar:{mode})"
    )


def publisher_limit_problem(publishers: list[Wanted], kept: list[Wanted]) -> str:
    """Several units on aar:publisher: which to remove, and where the others belong."""
    names = ", ".join(w.unit for w in publishers)
    # Suggest removing every unit but the one that keeps publishing (or the first).
    keep = kept[0].unit if kept else publishers[0].unit
    extra = " ".join(_unit_for_command(w.unit) for w in publishers if w.unit != keep)
    return (
        f"the publisher endpoint takes one AMS unit, but {names} are related; scale that "
        f"AMS to one unit (juju remove-unit {extra}) and relate other AMS applications "
        "read-only (juju relate <ams>:registry-client aar:client)"
    )


def _unit_for_command(unit: str) -> str:
    """`ams/1`, or `<ams>/1` across models (unit numbers are the same in both models)."""
    return f"{ams_application(unit)}/{unit.rpartition('/')[2]}"


def _unit_order(unit: str) -> tuple[str, int]:
    app, _, number = unit.rpartition("/")
    return (app, int(number) if number.isdigit() else 0)
