"""Data-tools MCP server (the seed's ``python -m data_mcp_server``): SQL over a sales table, charts.

The table lives in an in-memory SQLite database built at start-up; only SELECT runs.
"""

from __future__ import annotations

import sqlite3

from _recording import RecordingMCPServer

server = RecordingMCPServer("data-tools", version="1.0")

_db = sqlite3.connect(":memory:", check_same_thread=False)
_db.execute("CREATE TABLE sales (region TEXT, quarter TEXT, product TEXT, revenue REAL)")
_db.executemany("INSERT INTO sales VALUES (?, ?, ?, ?)", [
    ("north", "Q1", "widgets", 120.0), ("north", "Q2", "widgets", 135.5), ("south", "Q1", "widgets", 98.0),
    ("south", "Q2", "gadgets", 143.2), ("east", "Q1", "gadgets", 76.4), ("east", "Q2", "gadgets", 88.9),
    ("west", "Q1", "widgets", 110.1), ("west", "Q2", "gadgets", 129.7),
])


@server.tool(description="Run a read-only SQL query (SELECT) on the sales data table and return the rows")
def sql_query(sql: str = "SELECT region, SUM(revenue) AS revenue FROM sales GROUP BY region ORDER BY revenue DESC") -> list[dict]:
    if not sql.lstrip().lower().startswith("select"):
        raise ValueError("only SELECT statements are allowed")
    cur = _db.execute(sql)
    cols = [c[0] for c in cur.description]
    return [dict(zip(cols, row, strict=True)) for row in cur.fetchall()]


@server.tool(description="Visualization: a text bar chart of sales revenue by region")
def visualization(metric: str = "revenue") -> str:
    rows = _db.execute("SELECT region, SUM(revenue) FROM sales GROUP BY region ORDER BY 2 DESC").fetchall()
    top = max(r[1] for r in rows)
    return "\n".join(f"{r[0]:<6} {'#' * round(20 * r[1] / top)} {r[1]:.1f}" for r in rows)


if __name__ == "__main__":
    server.run()
