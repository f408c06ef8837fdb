#!/usr/bin/env python3
"""Writes random credentials for the dev overlay into secrets/ (git-ignored), consistent across files.

    deploy/k8s/overlays/dev/gen-secrets.py [--force] [--dir DIR]

One RabbitMQ user and one MongoDB user per service, each allowed its own queues / its own database
only; an admin of each store for operators; one HS256 JWT secret; the sandbox bank's SNAP secret.
Existing files are kept unless --force (new passwords would not match the users the data stores
already created on their volumes).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import secrets
import sys
from pathlib import Path

SERVICES = ("catalog", "orders", "payments", "notifications")
VHOST = "bejo"


def rabbit_hash(password: str) -> str:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt + sha256(salt + password))."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def permissions(service: str) -> dict[str, str]:
    # Its own queues (<service>.*; catalog also owns the catalog.sync exchange), the shared events
    # exchange, and the default exchange through which the kit parks messages and replays them.
    own = rf"{service}\..*"
    return {
        "user": service,
        "vhost": VHOST,
        "configure": rf"^(bejo\.events|{own})$",
        "write": rf"^(bejo\.events|amq\.default|{own})$",
        "read": rf"^(bejo\.events|{own})$",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path(__file__).resolve().parent / "secrets")
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    args = parser.parse_args()
    out: Path = args.dir
    if (out / "gateway.env").exists() and not args.force:
        print(f"{out} already holds credentials; keeping them (--force replaces them)")
        return 0
    out.mkdir(parents=True, exist_ok=True)
    os.chmod(out, 0o700)

    def pw() -> str:
        return secrets.token_urlsafe(24)

    jwt_secret = secrets.token_urlsafe(48)
    rabbit = {s: pw() for s in SERVICES}
    mongo = {s: pw() for s in SERVICES}
    rabbit_admin, mongo_admin = pw(), pw()
    files: dict[str, str] = {}
    for s in SERVICES:
        lines = [
            f"AMQP_URL=amqp://{s}:{rabbit[s]}@rabbitmq:5672/{VHOST}",
            f"MONGODB_URL=mongodb://{s}:{mongo[s]}@mongodb:27017/bejo_{s}?authSource=bejo_{s}",
            f"JWT_SECRET={jwt_secret}",
        ]
        if s == "payments":
            snap = json.dumps({"SANDBOXBANK": pw()}, separators=(",", ":"))
            lines.append(f"PAYMENTS_SNAP_CLIENT_SECRETS={snap}")
        files[f"{s}.env"] = "\n".join(lines)
    files["gateway.env"] = f"JWT_SECRET={jwt_secret}"
    files["mongodb.env"] = "\n".join(
        ["MONGO_INITDB_ROOT_USERNAME=admin", f"MONGO_INITDB_ROOT_PASSWORD={mongo_admin}"]
        + [f"{s.upper()}_DB_PASSWORD={mongo[s]}" for s in SERVICES]
    )
    users = [{"name": "admin", "password": rabbit_admin, "tags": ["administrator"]}]
    users += [{"name": s, "password": rabbit[s], "tags": []} for s in SERVICES]
    definitions = {
        "vhosts": [{"name": VHOST}],
        "users": [
            {
                "name": u["name"],
                "password_hash": rabbit_hash(str(u["password"])),
                "hashing_algorithm": "rabbit_password_hashing_sha256",
                "tags": u["tags"],
            }
            for u in users
        ],
        "permissions": [{"user": "admin", "vhost": VHOST, "configure": ".*", "write": ".*", "read": ".*"}]
        + [permissions(s) for s in SERVICES],
    }
    files["definitions.json"] = json.dumps(definitions, indent=2)
    # Operators' own logins (management UI, mongosh), kept next to the rest.
    files["admin.env"] = f"RABBITMQ_ADMIN_PASSWORD={rabbit_admin}\nMONGODB_ADMIN_PASSWORD={mongo_admin}"
    for name, text in files.items():
        path = out / name
        path.write_text(text + "\n")
        os.chmod(path, 0o600)
    print(f"wrote {', '.join(sorted(files))} to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
