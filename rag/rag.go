// Package rag turns questions into answers: it ingests knowledge files,
// splits them into chunks, retrieves the relevant ones from an index and
// composes a cited answer (with an LLM, from a curated Q&A item, or
// extractively when no LLM is configured).
package rag
