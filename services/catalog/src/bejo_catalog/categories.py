"""The shipped category tree (Indonesian names). Ids are stable slugs; children carry `parent_id`."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Category:
    id: str
    name: str
    parent_id: str | None


_TREE: dict[tuple[str, str], list[tuple[str, str]]] = {
    ("makanan-minuman", "Makanan & Minuman"): [
        ("kopi-teh", "Kopi & Teh"),
        ("makanan-ringan", "Makanan Ringan & Camilan"),
        ("bahan-pokok", "Bahan Pokok (Beras, Gula, Minyak)"),
        ("minuman-kemasan", "Air Mineral & Minuman Kemasan"),
        ("katering", "Nasi Kotak & Katering"),
        ("kue-roti", "Kue & Roti"),
    ],
    ("alat-tulis-kantor", "Alat Tulis Kantor"): [
        ("kertas", "Kertas & Amplop"),
        ("alat-tulis", "Pulpen, Pensil & Spidol"),
        ("map-arsip", "Map, Ordner & Arsip"),
        ("tinta-toner", "Tinta & Toner"),
    ],
    ("komputer-elektronik", "Komputer & Elektronik"): [
        ("laptop-pc", "Laptop & PC"),
        ("printer-scanner", "Printer & Scanner"),
        ("aksesoris-komputer", "Aksesoris Komputer"),
        ("jaringan", "Perangkat Jaringan"),
        ("elektronik-kantor", "Elektronik Kantor (Proyektor, AC)"),
    ],
    ("perlengkapan-kebersihan", "Perlengkapan Kebersihan"): [
        ("sabun-deterjen", "Sabun & Deterjen"),
        ("alat-kebersihan", "Sapu, Pel & Alat Kebersihan"),
        ("tisu", "Tisu & Kertas Higienis"),
    ],
    ("perabot-kantor", "Perabot Kantor"): [
        ("meja-kursi", "Meja & Kursi"),
        ("lemari-rak", "Lemari & Rak"),
    ],
    ("kesehatan", "Kesehatan & Alat Medis"): [
        ("obat-vitamin", "Obat & Vitamin"),
        ("alat-kesehatan", "Alat Kesehatan"),
        ("masker-apd", "Masker & APD"),
    ],
    ("pertanian-peternakan", "Pertanian & Peternakan"): [
        ("bibit-pupuk", "Bibit & Pupuk"),
        ("pakan-ternak", "Pakan Ternak"),
    ],
    ("kerajinan-batik", "Kerajinan & Batik"): [
        ("batik", "Batik & Kain Tradisional"),
        ("suvenir", "Suvenir & Kerajinan Tangan"),
    ],
    ("jasa", "Jasa"): [
        ("jasa-cetak", "Jasa Cetak & Fotokopi"),
        ("jasa-kebersihan", "Jasa Kebersihan"),
        ("jasa-servis", "Servis & Perawatan"),
        ("jasa-sewa", "Sewa Kendaraan & Peralatan"),
    ],
}


def _build() -> list[Category]:
    categories = []
    for (root_id, root_name), children in _TREE.items():
        categories.append(Category(root_id, root_name, None))
        categories.extend(Category(f"{root_id}.{child_id}", name, root_id) for child_id, name in children)
    return categories


CATEGORIES: list[Category] = _build()
BY_ID: dict[str, Category] = {c.id: c for c in CATEGORIES}
LEAVES: list[Category] = [c for c in CATEGORIES if c.parent_id is not None]


def with_descendants(category_id: str) -> set[str]:
    """The category and every category below it (the tree is two levels deep)."""
    return {c.id for c in CATEGORIES if c.id == category_id or c.parent_id == category_id}
