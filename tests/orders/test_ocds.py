"""Orders as OCDS 1.1 releases: the pure mapping, and the package the running service publishes,
validated with the official validator (lib-cove-ocds, OCDS 1.1.5 schema and codelists shipped in
`ocds_standard/`) and compiled into versioned records with `ocdskit compile`."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from orders_harness import Harness, key, payment_fields

from bejo_contracts.payments import (
    InvoiceFigures,
    InvoiceIssued,
    PaymentSucceeded,
    RefundCompleted,
    SettlementCompleted,
)
from bejo_orders import ocds
from bejo_orders.domain import Order
from bejo_orders.settings import OrdersSettings

T0 = datetime(2026, 12, 12, 2, 0, tzinfo=UTC)
STANDARD = Path(__file__).parent / "ocds_standard"
PUB = ocds.Publication(
    ocid_prefix="ocds-t3st00",
    public_url="https://bejo.example.go.id",
    publisher="bejo",
    license="https://creativecommons.org/licenses/by/4.0/",
    publication_policy="https://bejo.example.go.id/api/v1/ocds/policy",
)


def order(status: str, **extra: object) -> Order:
    steps = ["placed", "reserved", "approved", "accepted", "shipped", "received", "payment_pending", "paid"]
    steps = steps[: steps.index(status) + 1] if status in steps else [*steps, status]
    history = [
        {"actor_sub": "x", "role": "system", "at": T0 + timedelta(hours=i), "from": prev, "to": to}
        for i, (prev, to) in enumerate(zip([None, *steps], steps, strict=False))
    ]
    return Order.model_validate(
        {
            "_id": "ord_1",
            "checkout_id": "chk_1",
            "pemda": "35.15",
            "satker": "dinkes-sidoarjo",
            "satker_name": "Dinas Kesehatan Kabupaten Sidoarjo",
            "pp_id": "pp-ani",
            "ppk_id": "ppk-budi",
            "provider_id": "cv-sumber",
            "provider_name": "CV Sumber Rejeki",
            "provider_pkp": True,
            "payment_method": "va",
            "rup_code": "RUP-35.15-2026-0001",
            "delivery_address": "Jl. A 1",
            "lines": [
                {"product_id": "p1", "name": "Kopi Robusta 1kg", "unit": "pak", "quantity": 2, "unit_price": 95_000}
            ],
            "total": 190_000,
            "status": status,
            "version": len(steps),
            "created_at": T0,
            "updated_at": T0 + timedelta(hours=len(steps)),
            "history": history,
            **extra,
        }
    )


def test_an_approved_order_is_planning_tender_award_and_contract() -> None:
    [release] = ocds.releases(order("approved"), PUB, {"p1": "makanan-minuman.kopi-teh"})
    assert release["ocid"] == "ocds-t3st00-ord_1"
    assert release["tag"] == ["planning", "tender", "award", "contract"]
    assert release["buyer"] == {"id": "satker:35.15:dinkes-sidoarjo", "name": "Dinas Kesehatan Kabupaten Sidoarjo"}
    parties = {p["id"]: p for p in release["parties"]}
    assert "supplier" in parties["penyedia:cv-sumber"]["roles"]
    assert parties["penyedia:cv-sumber"]["identifier"]["scheme"] == ocds.PROVIDER_SCHEME
    assert parties["penyedia:cv-sumber"]["identifier"]["uri"] == "https://bejo.example.go.id/api/v1/providers/cv-sumber"
    assert "buyer" in parties["satker:35.15:dinkes-sidoarjo"]["roles"]
    tender = release["tender"]
    assert tender["techniques"] == {"hasElectronicCatalogue": True}
    assert (
        tender["submissionMethod"] == ["electronicSubmission"] and "E-purchasing" in tender["procurementMethodDetails"]
    )
    assert tender["items"][0]["classification"] == {
        "scheme": "X-BEJO-KATEGORI",
        "id": "makanan-minuman.kopi-teh",
        "uri": "https://bejo.example.go.id/api/v1/categories",
    }
    [contract] = release["contracts"]
    assert contract["value"] == {"amount": 190_000, "currency": "IDR"} and contract["status"] == "active"
    assert contract["dateSigned"] == (T0 + timedelta(hours=2)).isoformat()
    assert release["planning"]["budget"]["id"] == "RUP-35.15-2026-0001"
    assert "implementation" not in contract


def test_every_material_step_is_a_release_and_the_payment_shows_what_was_paid() -> None:
    paid_at = T0 + timedelta(days=2)
    paid = order("paid", payment_id="pay-1", paid_at=paid_at, paid_amount=210_900, bast_number="BAST/35.15/2026/1")
    releases = ocds.releases(paid, PUB)
    assert [r["tag"] for r in releases] == [
        ["planning", "tender", "award", "contract"],
        ["implementation"],
        ["implementation"],
    ]
    assert len({r["id"] for r in releases}) == 3 and {r["ocid"] for r in releases} == {"ocds-t3st00-ord_1"}
    bast = releases[1]["contracts"][0]["implementation"]
    assert bast == {
        "milestones": [
            {
                "id": "BAST/35.15/2026/1",
                "title": "Berita Acara Serah Terima BAST/35.15/2026/1",
                "type": "delivery",
                "status": "met",
                "dateMet": (T0 + timedelta(hours=5)).isoformat(),
            }
        ]
    }
    [transaction] = releases[2]["contracts"][0]["implementation"]["transactions"]
    # 190,000 + 11% PPN: the amount paid, not the order total
    assert transaction["value"] == {"amount": 210_900, "currency": "IDR"}
    assert transaction["source"] == "https://bejo.example.go.id/api/v1/payments/pay-1"
    assert transaction["date"] == paid_at.isoformat()


def test_refunded_and_cancelled_contracts_are_terminated_and_unapproved_orders_not_published() -> None:
    refunded = order("refunded", payment_id="pay-1", paid_at=T0, paid_amount=210_900, refund_amount=210_900)
    last = ocds.releases(refunded, PUB)[-1]
    assert last["tag"] == ["implementation", "contractTermination"]
    contract = last["contracts"][0]
    assert contract["status"] == "terminated"
    assert [t["value"]["amount"] for t in contract["implementation"]["transactions"]] == [210_900, 210_900]
    assert contract["implementation"]["transactions"][1]["payer"]["id"] == "penyedia:cv-sumber"
    cancelled = order("approved")
    cancelled.history.append(
        cancelled.history[-1].model_copy(update={"from_status": "approved", "to_status": "cancelled"})
    )
    assert ocds.releases(cancelled, PUB)[-1]["contracts"][0]["status"] == "terminated"
    assert ocds.releases(order("reserved"), PUB) == []


def test_package_states_license_policy_and_paging_link() -> None:
    package = ocds.release_package(
        [], pub=PUB, uri="https://bejo.example.go.id/api/v1/ocds/releases", published=T0, next_uri="https://x/next"
    )
    assert package["version"] == "1.1" and package["links"] == {"next": "https://x/next"}
    assert package["license"] == PUB.license and package["publicationPolicy"] == PUB.publication_policy


def test_ocid_prefix_is_ocds_and_six_characters() -> None:
    assert OrdersSettings().ocds_ocid_prefix.startswith("ocds-") and len(OrdersSettings().ocds_ocid_prefix) == 11
    with pytest.raises(ValueError, match="ocds_ocid_prefix"):
        OrdersSettings(ocds_ocid_prefix="ocds-bejo")


# -- the published package, validated ------------------------------------------------------------


def standard_zip(tmp_path: Path) -> Path:
    """The shipped schema and codelists, laid out as the standard repository's archive."""
    path = tmp_path / "standard-1__1__5.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("standard-1__1__5/", "")  # readers skip the first entry: the top folder
        for file in (STANDARD / "schema").rglob("*"):
            archive.write(file, f"standard-1__1__5/schema/{file.relative_to(STANDARD / 'schema')}")
    return path


def cove(package_file: Path, tmp_path: Path) -> dict[str, Any]:
    """lib-cove-ocds on a package, offline: the result it reports (errors, codelist checks)."""
    from libcoveocds.api import ocds_json_output
    from libcoveocds.config import LibCoveOCDSConfig

    config = LibCoveOCDSConfig()
    config.config["standard_zip"] = f"file://{standard_zip(tmp_path)}"
    config.config["additional_checks"] = "all"
    config.config["context"] = "api"
    out = tmp_path / "cove"
    out.mkdir()
    result: dict[str, Any] = ocds_json_output(str(out), str(package_file), None, lib_cove_ocds_config=config)
    return result


async def delivered_order(h: Harness, product_id: str, provider: str) -> dict[str, Any]:
    await h.seed_product(product_id, provider, 95_000, category_id="makanan-minuman.kopi-teh")
    await h.wait_products(product_id)
    status, checkout = await h.place([(product_id, 2)], key(), satker_name="Dinas Kesehatan Kabupaten Sidoarjo")
    assert status == 201, checkout
    placed = checkout["orders"][0]
    await h.wait_event(placed["id"], "placed")
    await h.reserve(placed)
    await h.wait_status(placed["id"], "reserved")
    oid = placed["id"]
    seller = h.seller(provider)
    for action, headers, body in (
        ("approve", h.ppk, {}),
        ("accept", seller, {}),
        ("ship", seller, {"tracking_note": "JNE 1"}),
        ("receive", h.ppk, {}),
    ):
        status, payload = await h.act(oid, action, headers, **body)
        assert status == 200, payload
    return await h.order(oid)


async def pay(h: Harness, received: dict[str, Any], payment_id: str) -> dict[str, Any]:
    fields = payment_fields(received, payment_id)
    invoice = InvoiceFigures(number="INV", base=190_000, ppn=20_900, pph22=950, total=210_900, net_to_provider=189_050)
    await h.publish(InvoiceIssued(**fields, invoice=invoice, bast_number=received["bast_number"]))  # type: ignore[arg-type]
    await h.publish(PaymentSucceeded(**fields, amount=210_900, paid_at=datetime.now(UTC), reference="SNAP-1"))  # type: ignore[arg-type]
    await h.wait_status(received["id"], "paid")
    await h.publish(SettlementCompleted(**fields, net_to_provider=189_050, ppn=20_900, pph22=950))  # type: ignore[arg-type]
    return await h.wait_status(received["id"], "completed")


@pytest.mark.integration
@pytest.mark.parametrize("harness", [{"public_url": "https://bejo.example.go.id"}], indirect=True)
async def test_published_package_validates_and_compiles_into_versioned_records(
    harness: Harness, tmp_path: Path
) -> None:
    h = harness
    completed = await pay(h, await delivered_order(h, "p-kopi", "prov-a"), "pay-a")
    refunded = await pay(h, await delivered_order(h, "p-teh", "prov-b"), "pay-b")
    refund = RefundCompleted(
        **payment_fields(refunded, "pay-b"),  # type: ignore[arg-type]
        amount=210_900,
        reason="barang rusak",
        actor={"sub": "admin-1", "role": "admin", "name": None},  # type: ignore[arg-type]
    )
    await h.publish(refund)
    await h.wait_status(refunded["id"], "refunded")

    # the first page links to the next on the gateway's public URL, not on this service
    status, first, _ = await h.call("GET", "/api/v1/ocds/releases?limit=1", {})
    assert status == 200, first
    assert first["uri"] == "https://bejo.example.go.id/api/v1/ocds/releases?limit=1"
    assert first["links"]["next"].startswith("https://bejo.example.go.id/api/v1/ocds/releases?limit=1&cursor=")
    status, package, _ = await h.call("GET", "/api/v1/ocds/releases", {})
    assert status == 200, package
    assert package["license"] and package["publicationPolicy"] == "https://bejo.example.go.id/api/v1/ocds/policy"
    status, policy, _ = await h.call("GET", "/api/v1/ocds/policy", {})
    assert status == 200 and policy["ocid_prefix"] == h.settings.ocds_ocid_prefix

    by_ocid: dict[str, list[dict[str, Any]]] = {}
    for release in package["releases"]:
        by_ocid.setdefault(release["ocid"], []).append(release)
    prefix = h.settings.ocds_ocid_prefix
    done, back = by_ocid[f"{prefix}-{completed['id']}"], by_ocid[f"{prefix}-{refunded['id']}"]
    assert [r["tag"] for r in done] == [
        ["planning", "tender", "award", "contract"],
        ["implementation"],
        ["implementation"],
        ["contractTermination"],
    ]
    paid = done[-1]["contracts"][0]["implementation"]["transactions"][0]
    assert paid["value"]["amount"] == 210_900 and paid["source"] == "https://bejo.example.go.id/api/v1/payments/pay-a"
    assert back[-1]["contracts"][0]["status"] == "terminated"
    assert done[0]["parties"][0]["name"] == "Dinas Kesehatan Kabupaten Sidoarjo"
    assert done[0]["tender"]["items"][0]["classification"]["id"] == "makanan-minuman.kopi-teh"

    package_file = tmp_path / "package.json"
    package_file.write_text(json.dumps(package))
    result = await asyncio.to_thread(cove, package_file, tmp_path)
    assert result["validation_errors"] == []
    assert "conformance_errors" not in result  # e.g. a malformed ocid prefix
    assert result["additional_closed_codelist_values"] == {}
    # open codelists: only our documented classification schemes are new values
    open_values = {v for entry in result["additional_open_codelist_values"].values() for v in entry["values"]}
    assert open_values <= {"X-BEJO-KATEGORI", "X-BEJO-PRODUK"}
    assert result["deprecated_fields"] == []

    # every release is kept, so ocdskit builds a versioned record per process
    schema = tmp_path / "release-schema.json"
    text = (STANDARD / "schema" / "release-schema.json").read_text()
    schema.write_text(text.replace("{{lang}}", "en").replace("{{version}}", "1.1"))
    compiled = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "ocdskit", "compile", "--schema", str(schema), "--package", "--versioned"],
        input=package_file.read_text(),
        capture_output=True,
        text=True,
        check=True,
    )
    records = {r["ocid"]: r for r in json.loads(compiled.stdout)["records"]}
    record = records[f"{prefix}-{refunded['id']}"]
    statuses = [v["value"] for v in record["versionedRelease"]["contracts"][0]["status"]]
    assert statuses == ["active", "terminated"]
    assert record["compiledRelease"]["contracts"][0]["status"] == "terminated"
