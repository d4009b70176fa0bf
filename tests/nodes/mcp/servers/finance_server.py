"""Financial-analysis MCP server for the agent patterns (stands in for the seed's "finance-mcp")."""

from __future__ import annotations

from typing import Literal

from _recording import RecordingMCPServer

server = RecordingMCPServer("financial", version="1.0")

ALLOCATIONS = {
    "conservative": {"bonds": 60, "equities": 30, "cash": 10},
    "moderate": {"bonds": 40, "equities": 55, "cash": 5},
    "aggressive": {"bonds": 15, "equities": 82, "cash": 3},
}
RATIOS = {"ACME": {"pe": 21.4, "debt_to_equity": 0.62, "net_margin_pct": 14.1},
          "GLOBEX": {"pe": 33.0, "debt_to_equity": 1.35, "net_margin_pct": 6.8}}


@server.tool(description="Recommend a portfolio allocation strategy for a risk profile")
def recommend_allocation(risk_profile: Literal["conservative", "moderate", "aggressive"] = "moderate") -> dict:
    return {"risk_profile": risk_profile, "allocation_pct": ALLOCATIONS[risk_profile]}


@server.tool(description="Assess investment risk of a market sector: volatility and drawdown")
def assess_investment_risk(sector: str = "technology") -> dict:
    table = {"technology": (0.27, -0.33), "energy": (0.31, -0.41), "healthcare": (0.18, -0.22),
             "financials": (0.22, -0.29)}
    vol, dd = table.get(sector.lower(), (0.25, -0.30))
    return {"sector": sector.lower(), "annual_volatility": vol, "max_drawdown": dd,
            "risk_level": "high" if vol > 0.25 else "medium"}


@server.tool(description="Financial ratios of a company: P/E, debt to equity, net margin")
def get_financial_ratios(company: str = "ACME") -> dict:
    if company.upper() not in RATIOS:
        raise ValueError(f"no financial data for {company!r}")
    return {"company": company.upper(), **RATIOS[company.upper()]}


if __name__ == "__main__":
    server.run()
