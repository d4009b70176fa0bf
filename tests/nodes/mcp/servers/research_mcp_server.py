"""Research-tools MCP server (the seed's ``python -m research_mcp_server``).

``web_search`` searches a small local document collection (no network) by shared
words; ``document_analysis`` reports a document's length, key terms and summary line.
"""

from __future__ import annotations

import re
from collections import Counter

from _recording import RecordingMCPServer

server = RecordingMCPServer("research-tools", version="1.0")

DOCUMENTS = {
    "doc-ai-chips": "AI accelerator demand drove semiconductor revenue up 35% in 2024. Data-centre spending "
                    "remains the main growth driver for chip makers.",
    "doc-ev-market": "Electric vehicle sales grew 25% in 2024, but price competition squeezed margins for most makers.",
    "doc-rates": "Central banks held interest rates steady; markets expect two rate cuts next year as inflation eases.",
    "doc-retail": "Online retail grew 9% while store traffic stayed flat; consumers favour discount channels.",
}
_STOP = {"the", "a", "an", "and", "of", "in", "for", "to", "as", "but", "most", "up", "is", "on", "while"}


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 2}


@server.tool(description="Search research documents (web search over the local collection) for a query")
def web_search(query: str, max_results: int = 3) -> list[dict]:
    want = _words(query)
    scored = sorted(((len(want & _words(t)), d) for d, t in DOCUMENTS.items()), key=lambda x: (-x[0], x[1]))
    return [{"id": d, "snippet": DOCUMENTS[d][:90], "score": s} for s, d in scored[:max_results] if s > 0]


@server.tool(description="Document analysis: key terms and length of one research document by id")
def document_analysis(doc_id: str = "doc-ai-chips") -> dict:
    if doc_id not in DOCUMENTS:
        raise ValueError(f"unknown document {doc_id!r}")
    text = DOCUMENTS[doc_id]
    terms = Counter(w for w in re.findall(r"[a-z]+", text.lower()) if w not in _STOP and len(w) > 3)
    return {"id": doc_id, "words": len(text.split()), "key_terms": [w for w, _ in terms.most_common(4)],
            "summary": text.split(".")[0] + "."}


if __name__ == "__main__":
    server.run()
