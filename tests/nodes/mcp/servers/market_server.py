"""Market-data MCP server for the agent patterns (stands in for the seed's "market-mcp").

A fixed, dated snapshot of sector trends and stock quotes, so results are reproducible.
"""

from __future__ import annotations

from _recording import RecordingMCPServer

server = RecordingMCPServer("market-data", version="1.0")

SECTORS = {
    "technology": {"ytd_change_pct": 18.4, "momentum": "strong", "drivers": ["AI infrastructure spending", "cloud growth"]},
    "energy": {"ytd_change_pct": -3.1, "momentum": "weak", "drivers": ["lower oil prices", "renewables capex"]},
    "healthcare": {"ytd_change_pct": 6.2, "momentum": "moderate", "drivers": ["GLP-1 demand", "ageing population"]},
    "financials": {"ytd_change_pct": 9.7, "momentum": "moderate", "drivers": ["higher net interest margins"]},
}
QUOTES = {"AAPL": 227.5, "MSFT": 431.2, "NVDA": 138.9, "XOM": 112.4, "JPM": 221.8, "UNH": 578.3}


@server.tool(description="Get market trends for a sector: year-to-date change, momentum and drivers")
def get_market_trends(sector: str = "technology") -> dict:
    key = sector.lower()
    if key not in SECTORS:
        raise ValueError(f"unknown sector {sector!r}; known: {', '.join(SECTORS)}")
    return {"sector": key, "as_of": "2024-06-28", **SECTORS[key]}


@server.tool(description="Get stock quotes (last price in USD) for ticker symbols")
def get_stock_quotes(symbols: list[str]) -> dict:
    return {s: QUOTES.get(s.upper()) for s in symbols}


@server.tool(description="Rank all market sectors by year-to-date performance")
def get_sector_performance() -> list[dict]:
    ranked = sorted(SECTORS.items(), key=lambda kv: -kv[1]["ytd_change_pct"])
    return [{"sector": k, "ytd_change_pct": v["ytd_change_pct"]} for k, v in ranked]


@server.resource("market://sectors", name="sectors", description="Known sectors", mime_type="text/plain")
def sectors() -> str:
    return ", ".join(SECTORS)


if __name__ == "__main__":
    server.run()
