/* The public dashboard. It reads only the public API (no token): GET /api/v1/stats (figures by
 * pemda, month, provider and category), /api/v1/categories (names) and /api/v1/ocds/releases
 * (recent orders, as open contracting data). The filters live in the URL, so a view can be shared. */
(function () {
  "use strict";

  var TEXT = {
    id: {
      title: "Transparansi Belanja Toko Daring",
      subtitle: "Pengadaan barang/jasa pemerintah daerah melalui e-marketplace, dari data terbuka bejo.",
      pemda: "Pemerintah daerah", allPemda: "Semua pemda", from: "Dari tanggal", to: "Sampai tanggal",
      allTime: "Semua waktu", value: "Nilai transaksi", orders: "Pesanan", providers: "Penyedia terverifikasi",
      products: "Produk tayang", pemdaTaking: "Pemkab/pemkot ikut serta", overTime: "Transaksi per bulan",
      topCategories: "Kategori teratas", topProviders: "Penyedia teratas", provider: "Penyedia",
      ranking: "Peringkat kabupaten/kota", pemdaName: "Kabupaten/kota", recent: "Pesanan selesai terbaru",
      paidOn: "Dibayar", buyer: "Satker pembeli", item: "Barang/jasa", amount: "Nilai",
      ocdsLink: "Unduh data terbuka (OCDS 1.1, JSON)", apiLink: "Dokumentasi API",
      footer: "Angka dari API publik bejo", generated: "Diperbarui", none: "Belum ada data.",
      province: "Perangkat daerah provinsi (tidak diperingkat): ", loading: "Memuat…",
      failed: "Data tidak dapat dimuat: ", toggle: "English", chartValue: "Nilai (Rp)", chartOrders: "Pesanan",
      other: "lainnya"
    },
    en: {
      title: "Online-shop procurement transparency",
      subtitle: "Regional government purchases through e-marketplaces, from bejo's open data.",
      pemda: "Regional government", allPemda: "All governments", from: "From", to: "To",
      allTime: "All time", value: "Transaction value", orders: "Orders", providers: "Verified providers",
      products: "Listed products", pemdaTaking: "Regencies/cities taking part", overTime: "Transactions per month",
      topCategories: "Top categories", topProviders: "Top providers", provider: "Provider",
      ranking: "Regencies and cities ranked", pemdaName: "Regency/city", recent: "Latest completed orders",
      paidOn: "Paid", buyer: "Buying work unit", item: "Goods/services", amount: "Value",
      ocdsLink: "Download the open data (OCDS 1.1, JSON)", apiLink: "API documentation",
      footer: "Figures from bejo's public API", generated: "Updated", none: "No data yet.",
      province: "Provincial work units (not ranked): ", loading: "Loading…",
      failed: "The data could not be loaded: ", toggle: "Bahasa Indonesia", chartValue: "Value (Rp)",
      chartOrders: "Orders", other: "other"
    }
  };

  // Kemendagri codes of Jawa Timur; other codes are shown as they are.
  var PEMDA = {
    "35": "Provinsi Jawa Timur", "35.01": "Kab. Pacitan", "35.02": "Kab. Ponorogo", "35.03": "Kab. Trenggalek",
    "35.04": "Kab. Tulungagung", "35.05": "Kab. Blitar", "35.06": "Kab. Kediri", "35.07": "Kab. Malang",
    "35.08": "Kab. Lumajang", "35.09": "Kab. Jember", "35.10": "Kab. Banyuwangi", "35.11": "Kab. Bondowoso",
    "35.12": "Kab. Situbondo", "35.13": "Kab. Probolinggo", "35.14": "Kab. Pasuruan", "35.15": "Kab. Sidoarjo",
    "35.16": "Kab. Mojokerto", "35.17": "Kab. Jombang", "35.18": "Kab. Nganjuk", "35.19": "Kab. Madiun",
    "35.20": "Kab. Magetan", "35.21": "Kab. Ngawi", "35.22": "Kab. Bojonegoro", "35.23": "Kab. Tuban",
    "35.24": "Kab. Lamongan", "35.25": "Kab. Gresik", "35.26": "Kab. Bangkalan", "35.27": "Kab. Sampang",
    "35.28": "Kab. Pamekasan", "35.29": "Kab. Sumenep", "35.71": "Kota Kediri", "35.72": "Kota Blitar",
    "35.73": "Kota Malang", "35.74": "Kota Probolinggo", "35.75": "Kota Pasuruan", "35.76": "Kota Mojokerto",
    "35.77": "Kota Madiun", "35.78": "Kota Surabaya", "35.79": "Kota Batu"
  };
  var REGENCY_OR_CITY = /^\d{2}\.\d{2}$/;

  var params = new URLSearchParams(location.search);
  var state = {
    lang: params.get("lang") === "en" ? "en" : "id",
    pemda: params.get("pemda") || "",
    from: params.get("from") || "",
    to: params.get("to") || ""
  };
  var categoryNames = {};
  var knownPemda = {};
  var last = null;
  var chart = null;

  function $(id) { return document.getElementById(id); }
  function t(key) { return TEXT[state.lang][key] || key; }
  function locale() { return state.lang === "en" ? "en-GB" : "id-ID"; }

  // Rupiah as Indonesians write it: "Rp 2.614.000" in full, "Rp 35,8 M" (miliar) in short.
  function rupiah(value) { return "Rp " + Math.round(value).toLocaleString(locale()); }
  function rupiahShort(value) {
    var units = state.lang === "en"
      ? [[1e12, "tn"], [1e9, "bn"], [1e6, "m"], [1e3, "k"]]
      : [[1e12, "T"], [1e9, "M"], [1e6, "jt"], [1e3, "rb"]];
    for (var i = 0; i < units.length; i++) {
      if (Math.abs(value) >= units[i][0]) {
        var n = value / units[i][0];
        return "Rp " + n.toLocaleString(locale(), { maximumFractionDigits: n < 100 ? 1 : 0 }) + " " + units[i][1];
      }
    }
    return rupiah(value);
  }
  function count(value) { return value.toLocaleString(locale()); }
  function pemdaName(code) { return PEMDA[code] || code; }
  function dateText(iso) {
    if (!iso) return "";
    return new Date(iso).toLocaleDateString(locale(), { day: "numeric", month: "short", year: "numeric", timeZone: "Asia/Jakarta" });
  }
  function el(tag, text, cls) {
    var node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = text;
    if (cls) node.className = cls;
    return node;
  }
  function row(cells) {
    var tr = document.createElement("tr");
    cells.forEach(function (c) { tr.appendChild(el("td", c[0], c[1])); });
    return tr;
  }

  function query(extra) {
    var q = new URLSearchParams();
    if (state.pemda) q.set("pemda", state.pemda);
    Object.keys(extra || {}).forEach(function (k) { if (extra[k]) q.set(k, extra[k]); });
    var s = q.toString();
    return s ? "?" + s : "";
  }

  function getJSON(path) {
    return fetch(path, { headers: { Accept: "application/json" } }).then(function (answer) {
      return answer.json().then(function (body) {
        if (!answer.ok) throw new Error((body && (body.detail || body.title)) || "HTTP " + answer.status);
        return body;
      });
    });
  }

  function translate() {
    document.documentElement.lang = state.lang;
    document.title = "bejo — " + t("title");
    document.querySelectorAll("[data-t]").forEach(function (node) { node.textContent = t(node.getAttribute("data-t")); });
    $("lang").textContent = t("toggle");
  }

  function syncUrl() {
    var q = new URLSearchParams();
    if (state.pemda) q.set("pemda", state.pemda);
    if (state.from) q.set("from", state.from);
    if (state.to) q.set("to", state.to);
    if (state.lang === "en") q.set("lang", "en");
    var s = q.toString();
    history.replaceState(null, "", location.pathname + (s ? "?" + s : ""));
  }

  function load() {
    syncUrl();
    $("error").hidden = true;
    var stats = getJSON("/api/v1/stats" + query({ from: state.from, to: state.to }));
    // every release of an order is published (about four each): 40 cover the 10 latest orders
    var releases = getJSON("/api/v1/ocds/releases" + query({ limit: "40" }));
    var categories = Object.keys(categoryNames).length
      ? Promise.resolve(null)
      : getJSON("/api/v1/categories").then(function (body) {
        body.items.forEach(function (c) { categoryNames[c.id] = c.name; });
      }).catch(function () { return null; });  // names are a nicety: ids still show
    Promise.all([stats, releases, categories]).then(function (answers) {
      last = { stats: answers[0], releases: answers[1] };
      render();
      document.body.setAttribute("data-loaded", "true");
    }).catch(function (err) {
      $("error").textContent = t("failed") + err.message;
      $("error").hidden = false;
      document.body.setAttribute("data-loaded", "error");
    });
  }

  function render() {
    if (!last) return;
    var s = last.stats;
    figure("fig-value", s.transaction_value, rupiahShort(s.transaction_value), rupiah(s.transaction_value));
    figure("fig-orders", s.orders, count(s.orders));
    figure("fig-providers", s.providers, count(s.providers));
    figure("fig-products", s.products, count(s.products));
    figure("fig-pemda", s.participating_pemda, count(s.participating_pemda));
    pemdaOptions(s.by_pemda);
    drawChart(s.by_period);
    drawCategories(s.by_category || []);
    drawProviders(s.top_providers || []);
    drawRanking(s.by_pemda);
    drawRecent(last.releases.releases || []);
    $("ocds").href = "/api/v1/ocds/releases" + query({});
    $("generated").textContent = t("generated") + " " + new Date(s.generated_at).toLocaleString(locale(), { timeZone: "Asia/Jakarta" }) + " WIB";
  }

  function figure(id, raw, text, title) {
    var node = $(id);
    node.textContent = text;
    node.setAttribute("data-value", String(raw));
    if (title) node.title = title; else node.removeAttribute("title");
  }

  function pemdaOptions(rows) {
    rows.forEach(function (r) { knownPemda[r.pemda] = true; });
    if (state.pemda) knownPemda[state.pemda] = true;
    var select = $("pemda");
    var codes = Object.keys(knownPemda).sort(function (a, b) {
      return (REGENCY_OR_CITY.test(a) - REGENCY_OR_CITY.test(b)) || pemdaName(a).localeCompare(pemdaName(b));
    });
    while (select.options.length > 1) select.remove(1);
    codes.forEach(function (code) { select.add(new Option(pemdaName(code), code)); });
    select.value = state.pemda;
  }

  function drawChart(periods) {
    var box = $("chart");
    var xs = periods.map(function (p) {
      var parts = p.period.split("-");
      return Date.UTC(+parts[0], +parts[1] - 1, 1) / 1000;
    });
    var values = periods.map(function (p) { return p.transaction_value; });
    var orders = periods.map(function (p) { return p.orders; });
    if (chart) { chart.destroy(); chart = null; }
    box.textContent = "";
    if (!periods.length) { box.appendChild(el("p", t("none"), "note")); return; }
    if (typeof uPlot === "undefined") return;
    var monthFmt = function (ts) {
      return new Date(ts * 1000).toLocaleDateString(locale(), { month: "short", year: "2-digit", timeZone: "UTC" });
    };
    var opts = {
      width: Math.max(280, box.clientWidth),
      height: 260,
      // half a month of room either side, so the first and last bars are whole
      scales: { x: { time: false, range: function (u, min, max) { return [min - 16 * 86400, max + 16 * 86400]; } },
        rp: { auto: true, range: function (u, min, max) { return [0, max * 1.1 || 1]; } },
        n: { auto: true, range: function (u, min, max) { return [0, max * 1.1 || 1]; } } },
      series: [
        { label: state.lang === "en" ? "Month" : "Bulan", value: function (u, v) { return v == null ? "" : monthFmt(v); } },
        { label: t("chartValue"), scale: "rp", stroke: "#0b6e4f", fill: "rgba(11,110,79,0.25)",
          paths: uPlot.paths.bars({ size: [0.7, 60] }), points: { show: false },
          value: function (u, v) { return v == null ? "" : rupiahShort(v); } },
        { label: t("chartOrders"), scale: "n", stroke: "#c77d0a", width: 2,
          value: function (u, v) { return v == null ? "" : count(v); } }
      ],
      axes: [
        { splits: function () { return xs; }, values: function (u, splits) { return splits.map(monthFmt); }, rotate: 0 },
        { scale: "rp", size: 70, values: function (u, splits) { return splits.map(function (v) { return rupiahShort(v).replace("Rp ", ""); }); } },
        { scale: "n", side: 1, grid: { show: false }, values: function (u, splits) { return splits.map(count); } }
      ]
    };
    chart = new uPlot(opts, [xs, values, orders], box);
  }

  function drawCategories(rows) {
    var list = $("categories");
    list.textContent = "";
    if (!rows.length) { list.appendChild(el("li", t("none"), "note")); return; }
    var top = rows[0].transaction_value || 1;
    rows.slice(0, 6).forEach(function (c) {
      var li = document.createElement("li");
      var name = el("div", null, "name");
      name.appendChild(el("span", categoryNames[c.category] || (c.category === "lainnya" ? t("other") : c.category)));
      name.appendChild(el("span", rupiahShort(c.transaction_value), "num"));
      li.appendChild(name);
      var bar = el("div", null, "bar");
      bar.style.width = Math.max(2, 100 * c.transaction_value / top) + "%";
      li.appendChild(bar);
      li.setAttribute("data-category", c.category);
      list.appendChild(li);
    });
  }

  function drawProviders(rows) {
    var body = $("providers");
    body.textContent = "";
    if (!rows.length) { body.appendChild(row([[t("none")]])); return; }
    rows.slice(0, 10).forEach(function (p) {
      body.appendChild(row([[p.provider_name], [count(p.orders), "num"], [rupiahShort(p.transaction_value), "num"]]));
    });
  }

  function drawRanking(rows) {
    var body = $("ranking");
    body.textContent = "";
    var ranked = rows.filter(function (r) { return REGENCY_OR_CITY.test(r.pemda); })
      .sort(function (a, b) { return b.transaction_value - a.transaction_value || a.pemda.localeCompare(b.pemda); });
    if (!ranked.length) body.appendChild(row([[t("none")]]));
    ranked.forEach(function (r, i) {
      var tr = row([[String(i + 1)], [pemdaName(r.pemda)], [rupiah(r.transaction_value), "num"], [count(r.orders), "num"],
        [count(r.providers), "num opt"], [count(r.products), "num opt"]]);
      tr.setAttribute("data-pemda", r.pemda);
      body.appendChild(tr);
    });
    var province = rows.filter(function (r) { return !REGENCY_OR_CITY.test(r.pemda) && r.orders; });
    $("provinceNote").textContent = province.map(function (r) {
      return t("province") + pemdaName(r.pemda) + " — " + rupiah(r.transaction_value) + ", " + count(r.orders) + " " + t("orders").toLowerCase();
    }).join("; ");
  }

  function drawRecent(releases) {
    var body = $("recent");
    body.textContent = "";
    var seen = {};
    var done = releases.filter(function (r) {
      var contract = (r.contracts || [])[0] || {};
      var paid = contract.implementation && (contract.implementation.transactions || []).length;
      if (!paid || seen[r.ocid]) return false;  // one row per order, its latest release
      seen[r.ocid] = true;
      return true;
    }).slice(0, 10);
    if (!done.length) { body.appendChild(row([[t("none")]])); return; }
    done.forEach(function (r) {
      var contract = r.contracts[0];
      var tx = contract.implementation.transactions[0];
      var supplier = ((r.awards || [])[0] || {}).suppliers || [{}];
      var items = (contract.items || []).map(function (i) { return i.description; }).join(", ");
      var value = tx.value ? tx.value.amount : contract.value.amount;
      var tr = row([[dateText(tx.date)], [(r.buyer || {}).name || ""], [supplier[0].name || ""], [items], [rupiah(value), "num"]]);
      tr.setAttribute("data-ocid", r.ocid);
      body.appendChild(tr);
    });
  }

  function start() {
    translate();
    $("from").value = state.from;
    $("to").value = state.to;
    $("pemda").addEventListener("change", function () { state.pemda = this.value; load(); });
    $("from").addEventListener("change", function () { state.from = this.value; load(); });
    $("to").addEventListener("change", function () { state.to = this.value; load(); });
    $("allTime").addEventListener("click", function () { state.from = state.to = ""; $("from").value = $("to").value = ""; load(); });
    $("lang").addEventListener("click", function () { state.lang = state.lang === "en" ? "id" : "en"; translate(); syncUrl(); render(); });
    var resizing = null;
    window.addEventListener("resize", function () {
      clearTimeout(resizing);
      resizing = setTimeout(function () { if (chart) chart.setSize({ width: Math.max(280, $("chart").clientWidth), height: 260 }); }, 150);
    });
    load();
  }

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start); else start();
})();
