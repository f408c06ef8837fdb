"""Record what the catalog and orders services answer the dashboard, for its browser test
(tests/gateway/dashboard_data.json). Run it against services holding a seeded history, e.g. after
`bejo seed --history --scale 0.1`:

    .venv/bin/python scripts/record_dashboard_data.py http://127.0.0.1:8081 http://127.0.0.1:8082
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import aiohttp
import orjson

OUT = Path(__file__).resolve().parents[1] / "tests" / "gateway" / "dashboard_data.json"


async def main(catalog: str, orders: str) -> None:
    async with aiohttp.ClientSession() as http:

        async def get(url: str) -> object:
            async with http.get(url) as answer:
                answer.raise_for_status()
                return await answer.json()

        data = {
            "catalog_stats": await get(catalog + "/api/v1/catalog/stats"),
            "categories": await get(catalog + "/api/v1/categories"),
            "orders_stats": await get(orders + "/api/v1/orders/stats"),
            "ocds": await get(orders + "/api/v1/ocds/releases?limit=100"),
        }
    # The page shows the 10 latest completed orders: the releases of the 12 latest orders will do.
    package = data["ocds"]
    assert isinstance(package, dict)
    ocids = list(dict.fromkeys(r["ocid"] for r in package["releases"]))[:12]
    package["releases"] = [r for r in package["releases"] if r["ocid"] in ocids]
    package.pop("links", None)
    OUT.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n")
    print(f"wrote {OUT} ({OUT.stat().st_size:,} bytes)")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
