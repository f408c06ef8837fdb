# ruff: noqa: E501  (the product templates read best as one table row per category)
"""The tables `bejo seed` draws from: the pemda taking part with their weights, provider names,
streets and legal forms, and a template of products per category (names, variants, unit, price
range, minimum order)."""

from __future__ import annotations

from dataclasses import dataclass

# The province and the 24 regencies/cities committed to Jatim Bejo in this data set, with weights
# roughly following their size (Kemendagri codes).
PEMDAS: list[tuple[str, str, int]] = [
    ("35", "Provinsi Jawa Timur", 6),
    ("35.78", "Kota Surabaya", 14),
    ("35.15", "Kabupaten Sidoarjo", 9),
    ("35.25", "Kabupaten Gresik", 6),
    ("35.07", "Kabupaten Malang", 7),
    ("35.73", "Kota Malang", 6),
    ("35.79", "Kota Batu", 2),
    ("35.09", "Kabupaten Jember", 5),
    ("35.10", "Kabupaten Banyuwangi", 4),
    ("35.06", "Kabupaten Kediri", 3),
    ("35.71", "Kota Kediri", 2),
    ("35.16", "Kabupaten Mojokerto", 3),
    ("35.17", "Kabupaten Jombang", 3),
    ("35.14", "Kabupaten Pasuruan", 3),
    ("35.13", "Kabupaten Probolinggo", 2),
    ("35.04", "Kabupaten Tulungagung", 2),
    ("35.05", "Kabupaten Blitar", 2),
    ("35.19", "Kabupaten Madiun", 2),
    ("35.02", "Kabupaten Ponorogo", 2),
    ("35.24", "Kabupaten Lamongan", 3),
    ("35.23", "Kabupaten Tuban", 2),
    ("35.22", "Kabupaten Bojonegoro", 2),
    ("35.18", "Kabupaten Nganjuk", 2),
    ("35.08", "Kabupaten Lumajang", 2),
    ("35.28", "Kabupaten Pamekasan", 2),
]
TOWN = {code: name.removeprefix("Kabupaten ").removeprefix("Kota ") for code, name, _ in PEMDAS}
TOWN["35"] = "Surabaya"

NAME_WORDS_1 = ["Sumber", "Makmur", "Berkah", "Sinar", "Karya", "Cahaya", "Mitra", "Tunas", "Putra", "Surya", "Bintang",
                "Harapan", "Sentosa", "Jaya", "Abadi", "Mulia", "Anugerah", "Rahmat", "Sejahtera", "Mandiri", "Barokah",
                "Indah", "Lestari", "Cipta", "Dwi", "Tri", "Gemilang", "Nusantara", "Amanah", "Bumi"]  # fmt: skip
NAME_WORDS_2 = ["Rejeki", "Jaya", "Abadi", "Mulia", "Mandiri", "Baru", "Sejahtera", "Harapan", "Bangsa", "Kencana",
                "Timur", "Sentosa", "Makmur", "Utama", "Perkasa", "Sakti", "Agung", "Lancar", "Santoso", "Raya",
                "Prima", "Sukses", "Bersama", "Tani", "Niaga", "Teknik", "Grafika", "Boga", "Medika", "Komputindo"]  # fmt: skip
STREETS = ["Jl. Raya Darmo", "Jl. Ahmad Yani", "Jl. Diponegoro", "Jl. Pahlawan", "Jl. Gajah Mada", "Jl. Sudirman",
           "Jl. Veteran", "Jl. Basuki Rahmat", "Jl. Kartini", "Jl. Hayam Wuruk", "Jl. Panglima Sudirman",
           "Jl. Raya Porong", "Jl. Mastrip", "Jl. Brawijaya", "Jl. Imam Bonjol"]  # fmt: skip
LEGAL = [("CV", 45), ("PT", 20), ("UD", 20), ("Koperasi", 8), ("PT Perorangan", 5), ("Firma", 2)]


@dataclass(frozen=True)
class Template:
    names: tuple[str, ...]
    variants: tuple[str, ...]
    unit: str
    price: tuple[int, int]  # rupiah range
    min_qty: tuple[int, ...] = (1,)


T = Template
PRODUCTS: dict[str, tuple[int, Template]] = {
    "makanan-minuman.kopi-teh": (7, T(("Kopi Robusta Dampit", "Kopi Arabika Ijen", "Kopi Excelsa Jember", "Kopi Bubuk Lanang",
        "Teh Hitam Wonosari", "Teh Hijau Kayumas", "Teh Celup Melati", "Wedang Uwuh Instan"), ("250 gr", "500 gr", "1 kg", "isi 25", "100 gr"),
        "pak", (15000, 180000))),
    "makanan-minuman.makanan-ringan": (8, T(("Keripik Tempe Sanan", "Keripik Apel Batu", "Kerupuk Udang Sidoarjo", "Rengginang",
        "Emping Melinjo", "Bakpia Kacang Hijau", "Kacang Telur", "Keripik Singkong Balado", "Jenang Kudus", "Sale Pisang"),
        ("200 gr", "250 gr", "500 gr", "1 kg", "kemasan toples"), "bungkus", (8000, 95000))),
    "makanan-minuman.bahan-pokok": (6, T(("Beras Premium", "Beras Medium", "Gula Pasir", "Minyak Goreng", "Tepung Terigu",
        "Telur Ayam Ras", "Garam Beryodium Madura"), ("1 kg", "5 kg", "10 kg", "25 kg", "2 liter"), "karung", (14000, 380000))),
    "makanan-minuman.minuman-kemasan": (6, T(("Air Mineral", "Air Mineral Gelas", "Sari Kedelai", "Jamu Kunyit Asam",
        "Sari Apel Malang"), ("240 ml isi 48", "600 ml isi 24", "1500 ml isi 12", "19 liter galon"), "dus", (18000, 75000), (1, 5, 10))),
    "makanan-minuman.katering": (6, T(("Nasi Kotak Ayam Bakar", "Nasi Kotak Rawon", "Nasi Kotak Pecel", "Snack Box Rapat",
        "Nasi Tumpeng Mini", "Prasmanan Rapat Dinas"), ("paket A", "paket B", "paket C", "paket hemat"), "kotak", (15000, 65000), (10, 20, 50))),
    "makanan-minuman.kue-roti": (4, T(("Roti Tawar Gandum", "Lapis Kukus Surabaya", "Bolu Pandan", "Kue Lumpur", "Pia Mangkok",
        "Brownies Kukus"), ("loyang", "isi 10", "isi 20", "box"), "box", (25000, 150000))),
    "alat-tulis-kantor.kertas": (5, T(("Kertas HVS A4", "Kertas HVS F4", "Amplop Coklat Folio", "Amplop Putih Kop", "Kertas Foto Glossy",
        "Buku Tulis"), ("70 gsm", "80 gsm", "isi 100", "isi 50", "58 lembar"), "rim", (18000, 85000))),
    "alat-tulis-kantor.alat-tulis": (4, T(("Pulpen Gel Hitam", "Pensil 2B", "Spidol Whiteboard", "Stabilo Highlighter",
        "Penghapus", "Tipe-X Kertas"), ("isi 12", "isi 24", "satuan", "set 4 warna"), "pak", (5000, 95000))),
    "alat-tulis-kantor.map-arsip": (3, T(("Map Plastik Kancing", "Ordner Folio", "Box File", "Stopmap Kertas", "Map Gantung"),
        ("isi 12", "biru", "hitam", "isi 50"), "pak", (10000, 160000))),
    "alat-tulis-kantor.tinta-toner": (3, T(("Tinta Printer Refill", "Toner Laser 85A", "Cartridge Hitam", "Pita Printer Dot Matrix"),
        ("hitam", "warna", "set 4 warna", "original"), "buah", (35000, 1200000))),
    "komputer-elektronik.laptop-pc": (3, T(("Laptop Kantor Core i5", "Laptop Core i3", "PC Desktop All-in-One", "Mini PC Kantor"),
        ("RAM 8GB SSD 512GB", "RAM 8GB SSD 256GB", "RAM 16GB SSD 512GB"), "unit", (5500000, 18000000))),
    "komputer-elektronik.printer-scanner": (2, T(("Printer Inkjet Tangki", "Printer Laser Mono", "Scanner Dokumen", "Printer Multifungsi"),
        ("A4", "F4", "Wi-Fi", "duplex"), "unit", (1500000, 7500000))),
    "komputer-elektronik.aksesoris-komputer": (4, T(("Mouse Wireless", "Keyboard USB", "Flashdisk", "Hardisk Eksternal", "Headset Rapat",
        "Webcam HD"), ("16GB", "32GB", "1TB", "hitam", "USB-C"), "buah", (45000, 1250000))),
    "komputer-elektronik.jaringan": (2, T(("Router Wi-Fi", "Switch Hub 8 Port", "Kabel LAN Cat6", "Access Point"),
        ("dual band", "gigabit", "305 meter", "outdoor"), "unit", (150000, 3500000))),
    "komputer-elektronik.elektronik-kantor": (2, T(("Proyektor Rapat", "AC Split", "Dispenser Air", "Kipas Angin Dinding",
        "Televisi LED"), ("1 PK", "1/2 PK", "3500 lumen", "32 inci", "43 inci"), "unit", (350000, 9500000))),
    "perlengkapan-kebersihan.sabun-deterjen": (4, T(("Sabun Cuci Tangan", "Deterjen Bubuk", "Cairan Pembersih Lantai", "Sabun Cuci Piring",
        "Karbol Sereh"), ("500 ml", "800 gr", "1 liter", "5 liter jeriken"), "botol", (9000, 120000))),
    "perlengkapan-kebersihan.alat-kebersihan": (3, T(("Sapu Ijuk", "Alat Pel Putar", "Kemoceng", "Tempat Sampah Pedal", "Sikat WC"),
        ("besar", "sedang", "40 liter", "set"), "buah", (12000, 280000))),
    "perlengkapan-kebersihan.tisu": (3, T(("Tisu Wajah", "Tisu Toilet", "Tisu Makan", "Tisu Basah"), ("isi 250", "isi 10 roll", "isi 50"),
        "pak", (8000, 65000))),
    "perabot-kantor.meja-kursi": (2, T(("Kursi Kerja Ergonomis", "Meja Kerja Kayu Jati", "Kursi Lipat Chitose", "Meja Rapat",
        "Kursi Tunggu 3 Dudukan"), ("hitam", "jati Jepara", "120 cm", "set"), "unit", (250000, 4500000))),
    "perabot-kantor.lemari-rak": (2, T(("Lemari Arsip Besi", "Rak Buku Kayu", "Filing Cabinet 4 Laci", "Loker Pegawai"),
        ("2 pintu", "4 laci", "12 pintu", "abu-abu"), "unit", (650000, 5500000))),
    "kesehatan.obat-vitamin": (2, T(("Vitamin C 500 mg", "Minyak Kayu Putih", "Jamu Temulawak", "Madu Hutan Bondowoso"),
        ("isi 30", "60 ml", "250 ml", "strip"), "botol", (12000, 150000))),
    "kesehatan.alat-kesehatan": (2, T(("Tensimeter Digital", "Termometer Inframerah", "Kotak P3K Lengkap", "Oksimeter"),
        ("standar", "lengkap", "dinding"), "unit", (60000, 850000))),
    "kesehatan.masker-apd": (2, T(("Masker Medis 3 Ply", "Masker KN95", "Hand Sanitizer", "Sarung Tangan Lateks", "Face Shield"),
        ("isi 50", "isi 20", "500 ml", "isi 100"), "box", (15000, 120000))),
    "pertanian-peternakan.bibit-pupuk": (2, T(("Bibit Cabai Rawit", "Pupuk Organik Cair", "Bibit Jeruk Keprok", "Pupuk Kompos"),
        ("polybag", "1 liter", "25 kg", "isi 100"), "pak", (10000, 250000))),
    "pertanian-peternakan.pakan-ternak": (1, T(("Pakan Ayam Petelur", "Pakan Ikan Lele", "Konsentrat Sapi"), ("5 kg", "25 kg", "50 kg"),
        "karung", (60000, 450000))),
    "kerajinan-batik.batik": (3, T(("Batik Tulis Madura", "Batik Cap Sidoarjo", "Kain Tenun Ikat", "Seragam Batik Korpri",
        "Batik Gajah Oling Banyuwangi"), ("katun primisima", "sutra", "ukuran L", "2 meter"), "potong", (85000, 1500000))),
    "kerajinan-batik.suvenir": (2, T(("Plakat Kayu Ukir", "Tas Anyaman Pandan", "Gantungan Kunci Logo", "Souvenir Reog Ponorogo"),
        ("custom", "isi 50", "sedang"), "buah", (5000, 450000), (1, 10, 50))),
    "jasa.jasa-cetak": (3, T(("Cetak Banner", "Cetak Brosur A5", "Fotokopi Dokumen", "Jilid Spiral", "Cetak Undangan"),
        ("per meter", "isi 1000", "per lembar", "per buku"), "paket", (500, 450000))),
    "jasa.jasa-kebersihan": (1, T(("Jasa Cleaning Service Kantor", "Jasa Cuci Karpet", "Jasa Fogging"), ("per bulan", "per m2", "per hari"),
        "paket", (150000, 6500000))),
    "jasa.jasa-servis": (2, T(("Servis AC", "Servis Laptop", "Perawatan Genset", "Servis Printer"), ("per unit", "per kunjungan"),
        "paket", (75000, 950000))),
    "jasa.jasa-sewa": (1, T(("Sewa Mobil Elf", "Sewa Tenda Acara", "Sewa Sound System", "Sewa Kursi Futura"),
        ("per hari", "12 jam", "isi 100"), "paket", (250000, 3500000))),
}  # fmt: skip
