"""The charm's decisions, as plain data: what the config means, whom to trust, what to say.

No `ops` and no machine access here: `charm.py` reads Juju into these types and applies the
result with `workload.py`. Validation and certificate parsing are the daemon's own code,
reached through the `aar_ext` extension module, so the charm cannot disagree with the
daemon about what is valid.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import aar_ext

ENDPOINTS = ("client", "publisher")
TOKEN_HINT = "juju config aar ua_token=<token>"  # noqa: S105 (a placeholder, not a token)


class InvalidConfig(Exception):
    """A charm setting the daemon would refuse; the message is the status to show."""


@dataclass(frozen=True)
class CharmConfig:
    """`juju config aar`, validated."""

    # repr=False: the token must not reach a log line through a dataclass repr.
    ua_token: str = field(repr=False)
    storage_config: str = field(repr=False)
    storage: dict
    port: int
    location: str

    @classmethod
    def from_options(cls, options: Mapping[str, object], state_directory: str) -> CharmConfig:
        """Validate the options; `InvalidConfig` carries the Blocked message."""
        token = str(options.get("ua_token") or "").strip()
        storage_config = str(options.get("storage_config") or "")
        location = str(options.get("location") or "").strip()
        port = options.get("port", 3000)
        if not isinstance(port, int) or not 1 <= port <= 65535:
            raise InvalidConfig(
                f"invalid port {port}: use a TCP port from 1 to 65535 (juju config aar port=3000)"
            )
        try:
            storage = aar_ext.check_storage_config(storage_config, state_directory)
        except aar_ext.ConfigError as e:
            raise InvalidConfig(
                f"invalid storage_config: {e} (fix it with juju config aar -f config.yaml; "
                "the registry keeps serving with its previous storage)"
            ) from None
        return cls(
            ua_token=token,
            storage_config=storage_config,
            storage=dict(storage),
            port=port,
            location=location,
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


def active_message(address: str, port: int, storage: Mapping[str, object], trusted: list) -> str:
    """`serving 10.0.0.5:3000 · s3 aar0 (eu-west-3) via CloudFront · 3 clients, 1 publisher`."""
    clients = sum(1 for cert in trusted if cert.get("role") == "client")
    publishers = sum(1 for cert in trusted if cert.get("role") == "publisher")
    return (
        f"serving {address}:{port} · {describe_storage(storage)} · "
        f"{plural(clients, 'client')}, {plural(publishers, 'publisher')}"
    )


@dataclass(frozen=True)
class RemoteUnit:
    """What one AMS unit put in its relation data."""

    endpoint: str
    relation_id: int
    unit: str
    certificate: str
    mode: str

    @property
    def origin(self) -> str:
        """Recorded in the trust store, so the charm knows which entries are its own."""
        return f"relation {self.endpoint}:{self.relation_id} {self.unit}"


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
    current_publishers = {
        c["fingerprint"]
        for c in trusted
        if c.get("role") == "publisher"
        and str(c.get("origin", "")).startswith("relation publisher:")
    }
    revoked = set(revoked)
    candidates: dict[str, list[Wanted]] = {endpoint: [] for endpoint in ENDPOINTS}
    for unit in sorted(units, key=lambda u: (u.endpoint, u.relation_id, _unit_order(u.unit))):
        if not unit.certificate.strip():
            continue
        mode = unit.mode.strip() or unit.endpoint
        if mode != unit.endpoint:
            other = "publisher" if unit.endpoint == "client" else "client"
            plan.problems.append(
                f"{unit.unit} asks for {mode} access on the aar:{unit.endpoint} endpoint; "
                f"relate it to aar:{other} instead (juju relate <ams> aar:{other}) "
                f"or set its registry mode to {unit.endpoint}"
            )
            continue
        try:
            info = aar_ext.parse_certificate(
                unit.certificate, f"the certificate of {unit.unit} (aar:{unit.endpoint})"
            )
        except aar_ext.CertificateError as e:
            plan.problems.append(f"invalid certificate from {unit.unit}: {e}")
            continue
        if info["fingerprint"] in revoked:
            plan.problems.append(
                f"the certificate of {unit.unit} (aar:{unit.endpoint}) was revoked; "
                "give that AMS a new certificate, or remove the relation"
            )
            continue
        candidates[unit.endpoint].append(
            Wanted(info["fingerprint"], unit.endpoint, unit.certificate, unit.origin, unit.unit)
        )

    publishers = candidates["publisher"]
    if len({w.unit for w in publishers}) > 1:
        names = ", ".join(w.unit for w in publishers)
        plan.problems.append(
            f"the publisher endpoint takes one AMS unit, but {names} are related; "
            "keep one (juju remove-unit <ams>/<n>) and relate the others to aar:client"
        )
        publishers = [w for w in publishers if w.fingerprint in current_publishers][:1]
    for wanted in publishers:
        plan.wanted.setdefault(wanted.fingerprint, wanted)
    for wanted in candidates["client"]:
        plan.wanted.setdefault(wanted.fingerprint, wanted)
    return plan


def _unit_order(unit: str) -> tuple[str, int]:
    app, _, number = unit.rpartition("/")
    return (app, int(number) if number.isdigit() else 0)
