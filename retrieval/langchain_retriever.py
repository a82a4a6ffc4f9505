"""The catalog as a langchain-core retriever, so LLM chains can run composed searches like any other retriever.

The query string is the newest instruction; ``reference`` (a catalog id or image
path), ``earlier_instructions``, ``where`` and ``k`` are fields. Each Document
carries the item's id, path, score and catalog metadata.
"""

from __future__ import annotations

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from retrieval.query_encoder import QueryEncoder
from retrieval.search import search_catalog
from retrieval.store import CatalogStore, Hit


class CatalogRetriever(BaseRetriever):
    """Composed image retrieval over a ``CatalogStore``: ``retriever.invoke("make it blue")``."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    store: CatalogStore
    encoder: QueryEncoder
    reference: str | None = None
    earlier_instructions: list[str] = Field(default_factory=list)
    where: str | None = None
    k: int = 10
    exclude: list[str] = Field(default_factory=list)

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        instructions = [*self.earlier_instructions, query] if query.strip() else list(self.earlier_instructions)
        result = search_catalog(self.store, self.encoder, self.reference, instructions, where=self.where, k=self.k,
                                exclude=self.exclude)
        return [to_document(hit, result.query) for hit in result.hits]


def to_document(hit: Hit, query: str) -> Document:
    """A search hit as a Document: the caption (or name, or id) as text, everything else as metadata."""
    text = hit.metadata.get("caption") or hit.metadata.get("name") or hit.id
    metadata = {**hit.metadata, "id": hit.id, "path": hit.path, "score": hit.score, "query": query}
    return Document(id=hit.id, page_content=str(text), metadata=metadata)
